// GetResource and ListCompanyResources on an in-process chstream server on
// 127.0.0.1:0 with a real channel and a real SQLite file. Events are the
// upstream samples (real captures where they exist) and simulator output,
// parsed by the real EventParser and committed through the real writer.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ingest/event_parser.h"
#include "ingest/simulator/event_generator.h"
#include "server/company_stream_service.h"
#include "tests/integration/test_server.h"

namespace chstream {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::MakeEvent;
using testing::TestServer;

// The stream each resource kind arrives on (upstream-api.md §1).
std::string StreamOf(const std::string& kind) {
  static const auto* const kStreams = new std::map<std::string, std::string>{
      {"company-profile", "companies"},
      {"filing-history", "filings"},
      {"company-officers", "officers"},
      {"company-psc-individual", "persons-with-significant-control"},
      {"company-charges", "charges"},
      {"company-insolvency", "insolvency-cases"},
      {"disqualified-officer-natural", "disqualified-officers"},
      {"disqualified-officer-corporate", "disqualified-officers"},
      {"company-exemptions", "company-exemptions"},
      {"persons-with-significant-control-statement",
       "persons-with-significant-control-statements"},
  };
  auto it = kStreams->find(kind);
  return it == kStreams->end() ? "" : it->second;
}

std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

// The resource_kind of an upstream line (the samples start with it).
std::string KindOf(const std::string& line) {
  const std::string key = R"({"resource_kind":")";
  if (line.rfind(key, 0) != 0) return "";
  return line.substr(key.size(), line.find('"', key.size()) - key.size());
}

// Parses upstream lines with the real parser, each on its stream.
std::vector<storage::Event> Parse(const std::vector<std::string>& lines) {
  ingest::EventParser parser;
  std::vector<storage::Event> events;
  for (const std::string& line : lines) {
    const std::string stream = StreamOf(KindOf(line));
    EXPECT_NE(stream, "") << line.substr(0, 80);
    auto result = parser.Parse(stream, line, absl::FromUnixSeconds(1764900000));
    if (const auto* error = std::get_if<ingest::ParseError>(&result)) {
      ADD_FAILURE() << error->reason << ": " << line.substr(0, 80);
      continue;
    }
    events.push_back(std::get<storage::Event>(std::move(result)));
  }
  return events;
}

class ResourcesTest : public ::testing::Test {
 protected:
  grpc::Status Get(const std::string& uri, v1::Resource* out) {
    grpc::ClientContext ctx;
    v1::GetResourceRequest req;
    req.set_resource_uri(uri);
    return stub_->GetResource(&ctx, req, out);
  }

  grpc::Status List(const v1::ListCompanyResourcesRequest& req,
                    v1::ListCompanyResourcesResponse* out) {
    grpc::ClientContext ctx;
    return stub_->ListCompanyResources(&ctx, req, out);
  }

  // Every page of a listing, following next_page_token.
  std::vector<std::string> ListAllUris(v1::ListCompanyResourcesRequest req,
                                       int* pages = nullptr) {
    std::vector<std::string> uris;
    int n = 0;
    do {
      v1::ListCompanyResourcesResponse resp;
      grpc::Status s = List(req, &resp);
      EXPECT_TRUE(s.ok()) << s.error_message();
      if (!s.ok()) break;
      for (const v1::Resource& r : resp.resources()) {
        uris.push_back(r.resource_uri());
      }
      req.set_page_token(resp.next_page_token());
      if (++n > 1000) break;
    } while (!req.page_token().empty());
    if (pages != nullptr) *pages = n;
    return uris;
  }

  TestServer server_;
  std::unique_ptr<v1::CompanyStream::Stub> stub_ = server_.stub();
};

struct Expected {
  std::string uri;
  std::string kind;
  std::string company_number;  // how each kind finds it
  bool deleted;
  std::string data_key;  // a top-level key of its data
  std::string data_value;
};

// Verifies each of the nine streams' resource kinds end to end: real
// upstream lines -> EventParser -> EventWriter/Store -> GetResource over gRPC,
// with the company number found per kind (the /company/{n}/ prefix; no
// leading slash for exemptions; data.company_number for corporate
// disqualified officers; none for natural ones), deletion, the last of two
// events of one resource winning, and data as a Struct.
TEST_F(ResourcesTest, EveryKindFromRealSamplesThroughParserStoreAndApi) {
  std::vector<std::string> lines =
      ReadLines("tests/ingest/testdata/upstream-events.ndjson");
  ASSERT_EQ(lines.size(), 7u) << "shared samples missing";
  for (const std::string& line :
       ReadLines("tests/integration/testdata/resource-samples.ndjson")) {
    lines.push_back(line);
  }
  ASSERT_EQ(lines.size(), 12u);
  std::vector<storage::Event> events = Parse(lines);
  ASSERT_EQ(events.size(), lines.size());
  server_.CommitAndWait(events);

  const std::vector<Expected> expected = {
      {"/company/SC571653", "company-profile", "SC571653", false,
       "company_name", "FC KIOSKS LTD"},
      // Two events: the second (with links.document_metadata) wins.
      {"/company/02154654/filing-history/MzM0NzUyNDMxNGFkaXF6a2N4",
       "filing-history", "02154654", false, "pages", ""},
      {"/company/07217743/appointments/lZX48JQSZFCbhsdpDhYLSoG6Dbc",
       "company-officers", "07217743", true, "name", "EXAMPLE, Anna"},
      {"/company/11787956/appointments/iKuQLdnRcqfBN9vTpEIJqgVsT7A",
       "company-officers", "11787956", false, "name", "DUKE, Michael"},
      {"/company/14271677/persons-with-significant-control/individual/"
       "OLv7cb3ohBOU-XXedafXA-BI1nA",
       "company-psc-individual", "14271677", false, "name", "Mr John Example"},
      {"/company/05155434/charges/P2zOyddJrIvX4pCiLto7F7lqH_4",
       "company-charges", "05155434", false, "status", "fully-satisfied"},
      {"/company/11519482/insolvency", "company-insolvency", "11519482", false,
       "etag", "0204bf1f01b6bcb1bbe21f946e775b5fd34a1fff"},
      {"/disqualified-officers/natural/rH3JIzSC8UrNmCOSi3ruAZGCahE",
       "disqualified-officer-natural", "", false, "surname", "PATEL"},
      {"/disqualified-officers/corporate/Xq3mVZ0cS1c4nZbLQ8Wb2m5aB7E",
       "disqualified-officer-corporate", "08123456", false, "name",
       "EXAMPLE HOLDINGS LIMITED"},
      {"company/04567890/exemptions", "company-exemptions", "04567890", false,
       "kind", "exemptions"},
      {"/company/14271677/persons-with-significant-control-statements/"
       "ENU4UQK4mpX39qvyVkYEGZYt4ME",
       "persons-with-significant-control-statement", "14271677", false,
       "statement", "no-individual-or-entity-with-signficant-control"},
  };
  // A fresh store and no duplicates: event i got position i + 1.
  std::map<std::string, const storage::Event*> last_event;
  for (size_t i = 0; i < events.size(); ++i) {
    events[i].position = i + 1;
    last_event[events[i].resource_uri] = &events[i];
  }
  std::set<std::string> streams;
  for (const Expected& x : expected) {
    SCOPED_TRACE(x.uri);
    v1::Resource r;
    grpc::Status s = Get(x.uri, &r);
    ASSERT_TRUE(s.ok()) << s.error_message();
    const storage::Event& last = *last_event.at(x.uri);
    streams.insert(last.stream);
    EXPECT_EQ(r.resource_uri(), x.uri);
    EXPECT_EQ(r.resource_kind(), x.kind);
    EXPECT_EQ(r.company_number(), x.company_number);
    EXPECT_EQ(r.deleted(), x.deleted);
    EXPECT_EQ(r.last_timepoint(), last.timepoint);
    EXPECT_EQ(r.last_position(), last.position);
    EXPECT_EQ(r.updated_at().seconds(), 1764900000);
    ASSERT_TRUE(r.has_data());
    ASSERT_TRUE(r.data().fields().contains(x.data_key));
    if (!x.data_value.empty()) {
      EXPECT_EQ(r.data().fields().at(x.data_key).string_value(), x.data_value);
    }
  }
  EXPECT_EQ(streams.size(), 9u);  // every stream

  // The filing's second event (fields_changed links.document_metadata) won.
  v1::Resource filing;
  ASSERT_TRUE(
      Get("/company/02154654/filing-history/MzM0NzUyNDMxNGFkaXF6a2N4", &filing)
          .ok());
  EXPECT_EQ(filing.last_timepoint(), 99061230);
  EXPECT_TRUE(
      filing.data().fields().at("links").struct_value().fields().contains(
          "document_metadata"));

  // A company's PSCs and PSC statements, by kind.
  v1::ListCompanyResourcesRequest req;
  req.set_company_number("14271677");
  req.add_resource_kinds("company-psc-individual");
  req.add_resource_kinds("persons-with-significant-control-statement");
  EXPECT_THAT(ListAllUris(req),
              ElementsAre("/company/14271677/persons-with-significant-control/"
                          "individual/OLv7cb3ohBOU-XXedafXA-BI1nA",
                          "/company/14271677/"
                          "persons-with-significant-control-statements/"
                          "ENU4UQK4mpX39qvyVkYEGZYt4ME"));
  // The deleted appointment only on request.
  req.Clear();
  req.set_company_number("07217743");
  req.add_resource_kinds("company-officers");
  EXPECT_THAT(ListAllUris(req), IsEmpty());
  req.set_include_deleted(true);
  EXPECT_THAT(
      ListAllUris(req),
      ElementsAre(
          "/company/07217743/appointments/lZX48JQSZFCbhsdpDhYLSoG6Dbc"));
  // The exemptions' company, found without a leading slash.
  req.Clear();
  req.set_company_number("04567890");
  EXPECT_THAT(ListAllUris(req), ElementsAre("company/04567890/exemptions"));
}

// Verifies the company number rule on simulator output for all nine streams:
// every resource is found by GetResource with the /company/{n}/ prefix of its
// URI as its company number (data.company_number for corporate
// disqualified officers, none for natural ones), and is listed under it.
TEST_F(ResourcesTest, SimulatorResourcesOfEveryStreamHaveTheirCompany) {
  ingest::EventParser parser;
  std::vector<storage::Event> events;
  std::map<std::string, storage::Event> last;  // by resource_uri
  absl::Time t = absl::FromUnixSeconds(1764900000);
  for (int k = 0; k < ingest::sim::kNumStreamKinds; ++k) {
    const auto kind = static_cast<ingest::sim::StreamKind>(k);
    ingest::sim::GeneratorOptions options;
    options.company_pool_size = 50;
    options.large_event_probability = 0;
    options.delete_probability = 0.1;
    ingest::sim::EventGenerator gen(kind, /*seed=*/k + 1, options);
    std::string line;
    for (int i = 0; i < 60; ++i) {
      t += absl::Seconds(1);
      gen.Next(t, &line);
      auto result = parser.Parse(ingest::sim::StreamName(kind), line, t);
      const auto* e = std::get_if<storage::Event>(&result);
      ASSERT_NE(e, nullptr) << std::get<ingest::ParseError>(result).reason;
      events.push_back(*e);
    }
  }
  server_.CommitAndWait(events);
  // A fresh store and no duplicates: event i got position i + 1.
  for (size_t i = 0; i < events.size(); ++i) {
    events[i].position = i + 1;
    last[events[i].resource_uri] = events[i];
  }
  ASSERT_GT(last.size(), 100u);
  std::set<std::string> kinds;
  int deleted = 0;
  for (const auto& [uri, e] : last) {
    SCOPED_TRACE(uri);
    kinds.insert(e.resource_kind);
    v1::Resource r;
    grpc::Status s = Get(uri, &r);
    ASSERT_TRUE(s.ok()) << s.error_message();
    std::string expected = ingest::CompanyNumberFromUri(uri);
    if (e.resource_kind == "disqualified-officer-corporate") {
      ASSERT_TRUE(r.data().fields().contains("company_number"));
      expected = r.data().fields().at("company_number").string_value();
    }
    if (e.resource_kind == "disqualified-officer-natural") {
      EXPECT_EQ(expected, "");
    } else {
      EXPECT_EQ(expected.size(), 8u);
    }
    // The deleted event without data keeps the number of an earlier one.
    if (!(e.type == storage::EventType::kDeleted && e.data_json.empty())) {
      EXPECT_EQ(r.company_number(), expected);
    }
    EXPECT_EQ(r.deleted(), e.type == storage::EventType::kDeleted);
    deleted += r.deleted();
    EXPECT_EQ(r.last_position(), e.position);
    EXPECT_EQ(r.resource_kind(), e.resource_kind);
    if (r.company_number().empty()) continue;
    v1::ListCompanyResourcesRequest req;
    req.set_company_number(r.company_number());
    req.add_resource_kinds(r.resource_kind());
    req.set_include_deleted(true);
    EXPECT_THAT(ListAllUris(req), ::testing::Contains(uri));
  }
  EXPECT_GE(kinds.size(), 10u);  // every stream, several PSC kinds
  EXPECT_GT(deleted, 0);
}

TEST_F(ResourcesTest, GetResourceInvalidAndNotFound) {
  v1::Resource r;
  grpc::Status s = Get("", &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("resource_uri must be 1 to 2048"));
  s = Get(std::string(server::kMaxResourceUriBytes + 1, 'a'), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  s = Get("/company/01234567/appointments/none", &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(),
              HasSubstr("/company/01234567/appointments/none"));
}

class ListPagingTest : public ResourcesTest {
 protected:
  void SetUp() override {
    std::vector<storage::Event> events;
    // 150 officers and 3 PSCs of one company, one filing of another.
    for (int i = 0; i < 150; ++i) {
      storage::Event e = MakeEvent("officers", 1000 + i, "SC571653");
      e.resource_kind = "company-officers";
      e.resource_uri = absl::StrCat("/company/SC571653/appointments/a", i);
      events.push_back(e);
    }
    for (int i = 0; i < 3; ++i) {
      storage::Event e =
          MakeEvent("persons-with-significant-control", 10 + i, "SC571653");
      e.resource_kind = "company-psc-corporate";
      e.resource_uri = absl::StrCat(
          "/company/SC571653/persons-with-significant-control/"
          "corporate-entity/p",
          i);
      events.push_back(e);
    }
    storage::Event f = MakeEvent("filings", 5, "00006400");
    f.resource_kind = "filing-history";
    f.resource_uri = "/company/00006400/filing-history/x";
    events.push_back(f);
    server_.CommitAndWait(events);
  }
};

// Verifies the default page size (100), the maximum (1,000), and that pages
// of any size return every resource once, in (kind, uri) order.
TEST_F(ListPagingTest, PagesOfEverySizeCoverEverythingOnce) {
  v1::ListCompanyResourcesRequest req;
  req.set_company_number(" sc571653");  // normalised as in GetCompany
  v1::ListCompanyResourcesResponse resp;
  ASSERT_TRUE(List(req, &resp).ok());
  EXPECT_EQ(resp.resources_size(),
            static_cast<int>(server::kDefaultResourcePageSize));
  EXPECT_FALSE(resp.next_page_token().empty());
  EXPECT_EQ(resp.resources(0).resource_kind(), "company-officers");

  req.set_page_size(server::kMaxResourcePageSize);
  int pages = 0;
  const std::vector<std::string> all = ListAllUris(req, &pages);
  EXPECT_EQ(all.size(), 153u);
  EXPECT_EQ(pages, 1);
  EXPECT_TRUE(std::is_sorted(all.begin(), all.begin() + 150));
  EXPECT_THAT(all.back(), HasSubstr("corporate-entity/p2"));
  for (uint32_t size : {1u, 7u, 50u, 152u, 153u}) {
    req.set_page_size(size);
    EXPECT_EQ(ListAllUris(req, &pages), all) << size;
    EXPECT_EQ(pages, static_cast<int>((153 + size - 1) / size)) << size;
  }
  req.set_page_size(2);
  req.add_resource_kinds("company-psc-corporate");
  EXPECT_EQ(ListAllUris(req).size(), 3u);
}

TEST_F(ListPagingTest, InvalidRequestsSayWhatIsAllowed) {
  const auto code_and_message = [&](v1::ListCompanyResourcesRequest req,
                                    grpc::StatusCode code,
                                    const std::string& text) {
    v1::ListCompanyResourcesResponse resp;
    grpc::Status s = List(req, &resp);
    EXPECT_EQ(s.error_code(), code) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(text));
  };
  v1::ListCompanyResourcesRequest req;
  req.set_company_number("S1234567");
  code_and_message(req, grpc::StatusCode::INVALID_ARGUMENT, "8 characters");

  req.set_company_number("SC571653");
  req.add_resource_kinds("officers");
  code_and_message(req, grpc::StatusCode::INVALID_ARGUMENT,
                   "allowed: company-profile, filing-history");
  req.clear_resource_kinds();
  for (int i = 0; i < 101; ++i) req.add_resource_kinds("company-officers");
  code_and_message(req, grpc::StatusCode::INVALID_ARGUMENT,
                   "at most 100 are allowed");
  req.clear_resource_kinds();

  req.set_page_size(server::kMaxResourcePageSize + 1);
  code_and_message(req, grpc::StatusCode::INVALID_ARGUMENT,
                   "over the maximum of 1000");
  req.set_page_size(0);

  req.set_page_token("not a token");
  code_and_message(req, grpc::StatusCode::INVALID_ARGUMENT,
                   "invalid page_token");
  // A token of another company's listing.
  v1::ListCompanyResourcesRequest other;
  other.set_company_number("SC571653");
  other.set_page_size(1);
  v1::ListCompanyResourcesResponse resp;
  ASSERT_TRUE(List(other, &resp).ok());
  ASSERT_FALSE(resp.next_page_token().empty());
  req.set_company_number("00006400");
  req.set_page_token(resp.next_page_token());
  code_and_message(req, grpc::StatusCode::INVALID_ARGUMENT,
                   "invalid page_token");

  // Never seen: NOT_FOUND. Seen, nothing of that kind: an empty list.
  req.Clear();
  req.set_company_number("01234567");
  code_and_message(req, grpc::StatusCode::NOT_FOUND,
                   "01234567 has not been seen");
  req.set_company_number("00006400");
  req.add_resource_kinds("company-officers");
  ASSERT_TRUE(List(req, &resp).ok());
  EXPECT_EQ(resp.resources_size(), 0);
  EXPECT_TRUE(resp.next_page_token().empty());
}

}  // namespace
}  // namespace chstream
