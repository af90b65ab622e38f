// File: tests/fuzz/request_filter_fuzz.cc
//
// Fuzzes the gRPC request -> filter and start point conversion
// (server/proto_convert.h FromProto/FilterToString, server/stream_reactors.h
// ResolveStart) and the store reads they drive, on a real SQLite store.
//
// Input: a serialized request. The bytes are parsed both as a
// SubscribeRequest and as a ReplayEventsRequest (the two share fields 1 and
// 2), and each that parses is checked:
//   - a filter FromProto accepts selects, through Store::ReadPage, exactly
//     the stored events that storage::Filter::Matches selects (the store
//     matches with its own code), and its company numbers are normalised
//     (NormalizeCompanyNumber gives them back unchanged);
//   - ResolveStart never returns a position above the head, and a page read
//     after it has only positions above it.
// The store is created once per process with events of several streams,
// kinds, companies and types.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <google/protobuf/stubs/logging.h>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "chstream/v1/chstream.pb.h"
#include "server/proto_convert.h"
#include "server/stream_reactors.h"
#include "storage/event.h"
#include "storage/store.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

namespace v1 = chstream::v1;
namespace storage = chstream::storage;
using chstream::server::FilterToString;
using chstream::server::FromProto;
using chstream::server::NormalizeCompanyNumber;
using chstream::server::ResolveStart;

storage::Store* store = nullptr;
std::vector<storage::Event>* stored = nullptr;  // every event, by position

storage::Batch MakeBatch() {
  struct Row {
    const char* stream;
    const char* kind;
    const char* company;
    storage::EventType type;
  };
  const Row rows[] = {
      {"companies", "company-profile", "SC571653",
       storage::EventType::kChanged},
      {"filings", "filing-history", "02154654", storage::EventType::kChanged},
      {"charges", "company-charges", "05155434", storage::EventType::kChanged},
      {"insolvency-cases", "company-insolvency", "11519482",
       storage::EventType::kChanged},
      {"persons-with-significant-control", "company-psc-individual", "14271677",
       storage::EventType::kDeleted},
      {"officers", "company-officers", "07217743",
       storage::EventType::kChanged},
      {"disqualified-officers", "disqualified-officer-natural", "",
       storage::EventType::kChanged},
      {"companies", "company-profile", "02154654",
       storage::EventType::kDeleted},
      {"filings", "filing-history", "SC571653", storage::EventType::kChanged},
      {"officers", "company-officers", "SC571653",
       storage::EventType::kDeleted},
  };
  storage::Batch batch;
  int64_t timepoint = 1000;
  absl::Time published = absl::FromUnixSeconds(1650000000);
  for (int round = 0; round < 3; ++round) {
    for (const Row& row : rows) {
      storage::Event e;
      e.stream = row.stream;
      e.timepoint = timepoint++;
      e.type = row.type;
      e.resource_kind = row.kind;
      e.resource_id = absl::StrCat("id", e.timepoint);
      e.resource_uri = absl::StrCat("/company/", row.company, "/x");
      e.company_number = row.company;
      e.published_at = published;
      e.received_at = published + absl::Seconds(1);
      published += absl::Minutes(7);
      if (row.type == storage::EventType::kChanged) e.data_json = "{}";
      batch.events.push_back(std::move(e));
    }
  }
  return batch;
}

std::vector<uint64_t> Positions(const std::vector<storage::Event>& events) {
  std::vector<uint64_t> out;
  for (const auto& e : events) out.push_back(e.position);
  return out;
}

void Check(const v1::EventFilter& proto_filter, bool has_start,
           const v1::StartPoint& start, bool allow_now) {
  absl::StatusOr<storage::Filter> filter = FromProto(proto_filter);
  if (!filter.ok()) {
    FUZZ_CHECK(filter.status().code() == absl::StatusCode::kInvalidArgument)
        << filter.status();
    return;
  }
  (void)FilterToString(*filter);
  for (const std::string& n : filter->company_numbers) {
    absl::StatusOr<std::string> again = NormalizeCompanyNumber(n);
    FUZZ_CHECK(again.ok() && *again == n) << "'" << n << "' not normalised";
  }
  const uint64_t head = store->HeadPosition();

  std::vector<storage::Event> expected;
  for (const auto& e : *stored) {
    if (filter->Matches(e)) expected.push_back(e);
  }
  absl::StatusOr<storage::Page> page =
      store->ReadPage(0, head, *filter, stored->size() + 1, head + 1);
  FUZZ_CHECK(page.ok()) << page.status();
  FUZZ_CHECK(Positions(page->events) == Positions(expected))
      << "ReadPage and Filter::Matches disagree for "
      << FilterToString(*filter) << ": " << page->events.size() << " vs "
      << expected.size() << " events";

  absl::StatusOr<uint64_t> after =
      ResolveStart(store, start, has_start, allow_now, head);
  if (!after.ok()) return;
  FUZZ_CHECK(*after <= head) << *after << " > head " << head;
  page = store->ReadPage(*after, head, *filter, 5);
  FUZZ_CHECK(page.ok()) << page.status();
  for (const auto& e : page->events) {
    FUZZ_CHECK(e.position > *after && e.position <= head) << e.position;
    FUZZ_CHECK(filter->Matches(e));
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  // Parsing invalid UTF-8 into a string field logs an error per input.
  google::protobuf::SetLogHandler(nullptr);
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = std::string(tmp != nullptr ? tmp : "/tmp") +
                    "/request_filter_fuzz.XXXXXX";
  FUZZ_CHECK(::mkdtemp(dir.data()) != nullptr) << dir;
  auto opened = storage::Store::Open(dir + "/fuzz.db");
  FUZZ_CHECK(opened.ok()) << opened.status();
  store = opened->release();
  auto committed = store->Commit(MakeBatch(), absl::Now());
  FUZZ_CHECK(committed.ok()) << committed.status();
  auto page =
      store->ReadPage(0, store->HeadPosition(), storage::Filter{}, 1000, 1000);
  FUZZ_CHECK(page.ok()) << page.status();
  stored = new std::vector<storage::Event>(std::move(page->events));
  FUZZ_CHECK(stored->size() == 30) << stored->size();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  v1::SubscribeRequest subscribe;
  if (subscribe.ParseFromArray(data, static_cast<int>(size))) {
    Check(subscribe.filter(), subscribe.has_start(), subscribe.start(),
          /*allow_now=*/true);
  }
  v1::ReplayEventsRequest replay;
  if (replay.ParseFromArray(data, static_cast<int>(size))) {
    Check(replay.filter(), replay.has_start(), replay.start(),
          /*allow_now=*/false);
  }
  return 0;
}
