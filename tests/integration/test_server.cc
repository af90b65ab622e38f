#include "tests/integration/test_server.h"

#include <atomic>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace chstream::testing {
// Struct wire bytes for {key: value} (field 1 map entry: key=1, value=2
// Value{string_value=3}). Built by hand so that tests do not depend on
// ingest's encoder.
std::string StructWithString(const std::string& key, const std::string& value) {
  auto varint = [](std::string* out, uint64_t v) {
    while (v >= 0x80) {
      out->push_back(static_cast<char>(v | 0x80));
      v >>= 7;
    }
    out->push_back(static_cast<char>(v));
  };
  std::string val;  // Value
  val.push_back(0x1a);
  varint(&val, value.size());
  val += value;
  std::string entry;
  entry.push_back(0x0a);
  varint(&entry, key.size());
  entry += key;
  entry.push_back(0x12);
  varint(&entry, val.size());
  entry += val;
  std::string out;
  out.push_back(0x0a);
  varint(&out, entry.size());
  out += entry;
  return out;
}

TestServer::TestServer(TestServerOptions options) : options_(options) {
  static std::atomic<int> counter{0};
  if (options_.db_name.empty()) {
    options_.db_name = absl::StrCat("server-", counter.fetch_add(1), ".db");
  }
  const std::string path =
      absl::StrCat(std::getenv("TEST_TMPDIR"), "/", options_.db_name);
  auto store = storage::Store::Open(path);
  EXPECT_TRUE(store.ok()) << store.status();
  store_ = *std::move(store);
  executor_ = std::make_unique<server::Executor>(2);
  read_executor_ = std::make_unique<server::Executor>(2, options_.before_read);
  // Commits only when CommitAndWait flushes, so that its events are one
  // transaction and one Publish (the tests of overflow and fell_behind rely
  // on that); the default writer would commit the first event alone as
  // soon as it is pushed.
  storage::EventWriter::Options writer_options;
  writer_options.max_delay = absl::Hours(1);
  writer_ = std::make_unique<storage::EventWriter>(
      store_.get(), writer_options,
      [this](const storage::CommitResult& r) { hub_.Publish(r.events); },
      options_.clock);
  writer_->Start();
  server::ServiceOptions so;
  so.version = "test";
  so.upstream = "none";
  so.started_at = options_.clock->Now();
  so.max_subscribers = options_.max_subscribers;
  so.subscriber_queue = options_.subscriber_queue;
  so.page_size = options_.page_size;
  so.max_subscriber_lag = options_.max_subscriber_lag;
  so.subscriber_queue_bytes = options_.subscriber_queue_bytes;
  so.max_scan = options_.max_scan;
  so.subscriber_write_timeout = options_.subscriber_write_timeout;
  so.max_replays = options_.max_replays;
  so.read_executor = read_executor_.get();
  so.before_start_write = options_.before_start_write;
  service_ = std::make_unique<server::CompanyStreamService>(
      store_.get(), &hub_, executor_.get(), nullptr, options_.clock, so);
  auto grpc = server::GrpcServer::Start("127.0.0.1:0", service_.get());
  EXPECT_TRUE(grpc.ok()) << grpc.status();
  grpc_ = *std::move(grpc);
  channel_ = grpc::CreateChannel(address(), grpc::InsecureChannelCredentials());
}

TestServer::~TestServer() {
  Shutdown();
  // Run what is still queued while the service it refers to is alive.
  read_executor_.reset();
  executor_.reset();
}

std::string TestServer::address() const {
  return absl::StrCat("127.0.0.1:", grpc_->port());
}

void TestServer::CommitAndWait(std::vector<storage::Event> events) {
  for (storage::Event& e : events) writer_->Push(std::move(e));
  writer_->Flush();
}

void TestServer::Shutdown(absl::Duration grace) {
  if (grpc_ != nullptr) grpc_->Shutdown(grace);
  if (writer_ != nullptr) writer_->Stop();
}

storage::Event MakeEvent(const std::string& stream, int64_t timepoint,
                         const std::string& company_number,
                         storage::EventType type) {
  storage::Event e;
  e.stream = stream;
  e.timepoint = timepoint;
  e.type = type;
  e.company_number = company_number;
  e.published_at = absl::FromUnixSeconds(1'700'000'000 + timepoint % 100000);
  e.received_at = e.published_at + absl::Milliseconds(250);
  if (stream == "companies") {
    e.resource_kind = "company-profile";
    e.resource_uri = "/company/" + company_number;
    e.resource_id = company_number;
    const std::string name = absl::StrCat("COMPANY ", company_number, " LTD");
    e.data_json = absl::StrCat("{\"company_name\":\"", name, "\"}");
    e.data_pb = StructWithString("company_name", name);
    storage::CompanyFields f;
    f.company_name = name;
    f.company_status = "active";
    f.company_type = "ltd";
    f.jurisdiction = "england-wales";
    f.date_of_creation = "2020-01-01";
    f.registered_office_address.postal_code = "CF14 3UZ";
    f.sic_codes = {"62020"};
    e.company = f;
  } else {
    e.resource_kind = "filing-history";
    const std::string id = absl::StrCat("T", timepoint);
    e.resource_uri =
        absl::StrCat("/company/", company_number, "/filing-history/", id);
    e.resource_id = id;
    e.data_json = absl::StrCat("{\"transaction_id\":\"", id, "\"}");
    e.data_pb = StructWithString("transaction_id", id);
  }
  return e;
}

}  // namespace chstream::testing
