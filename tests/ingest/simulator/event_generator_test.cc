#include "ingest/simulator/event_generator.h"

#include <simdjson.h>

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace chstream::ingest::sim {
namespace {

using ::testing::ElementsAre;

const absl::Time kStart = absl::FromUnixSeconds(1'764'335'000);  // 2025-11-28

std::vector<StreamKind> AllKinds() {
  std::vector<StreamKind> kinds;
  for (int i = 0; i < kNumStreamKinds; ++i) {
    kinds.push_back(static_cast<StreamKind>(i));
  }
  return kinds;
}

struct Generated {
  int64_t timepoint;
  std::string line;
};

std::vector<Generated> Generate(StreamKind kind, uint64_t seed, int count,
                                GeneratorOptions options = {}) {
  EventGenerator gen(kind, seed, std::move(options));
  std::vector<Generated> out;
  out.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    Generated g;
    g.timepoint = gen.Next(kStart + absl::Milliseconds(137) * i, &g.line);
    out.push_back(std::move(g));
  }
  return out;
}

// A parsed line. simdjson's DOM keeps object keys in document order.
class Parsed {
 public:
  explicit Parsed(const std::string& line) {
    error_ = parser_.parse(line).get(root_);
  }
  bool ok() const { return error_ == simdjson::SUCCESS; }
  simdjson::dom::element root() const { return root_; }
  std::vector<std::string> Keys(simdjson::dom::element e) const {
    std::vector<std::string> keys;
    simdjson::dom::object object;
    if (e.get_object().get(object) != simdjson::SUCCESS) return keys;
    for (auto field : object) keys.emplace_back(field.key);
    return keys;
  }
  std::string String(simdjson::dom::element e, std::string_view path) const {
    std::string_view value;
    if (e.at_pointer(path).get_string().get(value) != simdjson::SUCCESS) {
      return "<missing>";
    }
    return std::string(value);
  }
  bool Has(std::string_view path) const {
    simdjson::dom::element e;
    return root_.at_pointer(path).get(e) == simdjson::SUCCESS;
  }

 private:
  simdjson::dom::parser parser_;
  simdjson::dom::element root_;
  simdjson::error_code error_;
};

// Returns the first object (by JSON pointer) whose keys are not strictly
// ascending, or "" if every object is sorted.
std::string FirstUnsortedObject(simdjson::dom::element e, std::string path) {
  simdjson::dom::object object;
  simdjson::dom::array array;
  if (e.get_object().get(object) == simdjson::SUCCESS) {
    std::string_view previous;
    bool first = true;
    for (auto field : object) {
      if (!first && !(previous < field.key)) {
        return absl::StrCat(path, " (", std::string(previous), " then ",
                            std::string(field.key), ")");
      }
      first = false;
      previous = field.key;
      std::string inner = FirstUnsortedObject(
          field.value, absl::StrCat(path, "/", std::string(field.key)));
      if (!inner.empty()) return inner;
    }
  } else if (e.get_array().get(array) == simdjson::SUCCESS) {
    int i = 0;
    for (auto item : array) {
      std::string inner =
          FirstUnsortedObject(item, absl::StrCat(path, "/", i++));
      if (!inner.empty()) return inner;
    }
  }
  return "";
}

bool IsCompact(const std::string& line) {
  std::string minified(line.size() + 1, '\0');
  size_t length = 0;
  if (simdjson::minify(line.data(), line.size(), minified.data(), length) !=
      simdjson::SUCCESS) {
    return false;
  }
  return length == line.size();
}

const std::map<StreamKind, std::set<std::string>>& AllowedResourceKinds() {
  static const auto* kinds = new std::map<StreamKind, std::set<std::string>>{
      {StreamKind::kCompanies, {"company-profile"}},
      {StreamKind::kFilings, {"filing-history"}},
      {StreamKind::kOfficers, {"company-officers"}},
      {StreamKind::kPsc,
       {"company-psc-individual", "company-psc-corporate", "company-psc-legal",
        "company-psc-supersecure", "individual-beneficial-owner",
        "corporate-entity-beneficial-owner", "legal-person-beneficial-owner",
        "super-secure-beneficial-owner"}},
      {StreamKind::kCharges, {"company-charges"}},
      {StreamKind::kInsolvency, {"company-insolvency"}},
      {StreamKind::kDisqualifiedOfficers,
       {"disqualified-officer-natural", "disqualified-officer-corporate"}},
      {StreamKind::kExemptions, {"company-exemptions"}},
      {StreamKind::kPscStatements,
       {"persons-with-significant-control-statement"}},
  };
  return *kinds;
}

TEST(EventGeneratorTest, StreamNamesRoundTrip) {
  EXPECT_EQ(StreamName(StreamKind::kCompanies), "companies");
  EXPECT_EQ(StreamName(StreamKind::kPscStatements),
            "persons-with-significant-control-statements");
  for (StreamKind kind : AllKinds()) {
    EXPECT_EQ(StreamKindFromName(StreamName(kind)), kind);
    EXPECT_EQ(StreamKindFromName("/" + std::string(StreamName(kind))), kind);
  }
  EXPECT_EQ(StreamKindFromName("insolvency"), std::nullopt);
  EXPECT_EQ(StreamKindFromName(""), std::nullopt);
  EXPECT_EQ(DefaultFirstTimepoint(StreamKind::kCompanies), 82'000'000);
}

TEST(EventGeneratorTest, SameSeedAndTimesGiveIdenticalLines) {
  for (StreamKind kind : AllKinds()) {
    auto a = Generate(kind, 42, 500);
    auto b = Generate(kind, 42, 500);
    auto c = Generate(kind, 43, 500);
    int differing = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(a[i].line, b[i].line) << StreamName(kind) << " #" << i;
      ASSERT_EQ(a[i].timepoint, b[i].timepoint);
      if (a[i].line != c[i].line) ++differing;
    }
    EXPECT_GT(differing, 400) << StreamName(kind);
  }
}

// Verifies the envelope layout of §4.5 for every stream kind: compact valid
// JSON (simdjson also validates UTF-8), Go key order, sorted data keys at
// every level, and the per-stream resource_kind / resource_uri shapes.
TEST(EventGeneratorTest, EveryKindIsValidCompactJsonInGoKeyOrder) {
  GeneratorOptions options;
  options.large_event_probability = 0.01;
  options.non_ascii_probability = 0.2;
  for (StreamKind kind : AllKinds()) {
    SCOPED_TRACE(StreamName(kind));
    int deleted = 0, with_fields_changed = 0;
    for (const Generated& g : Generate(kind, 7, 3000, options)) {
      ASSERT_EQ(g.line.find('\n'), std::string::npos);
      ASSERT_TRUE(IsCompact(g.line)) << g.line;
      Parsed p(g.line);
      ASSERT_TRUE(p.ok()) << g.line;
      const bool has_data = p.Has("/data");
      const std::string type = p.String(p.root(), "/event/type");
      ASSERT_TRUE(type == "changed" || type == "deleted") << g.line;
      if (type == "deleted") ++deleted;
      if (has_data) {
        ASSERT_THAT(p.Keys(p.root()),
                    ElementsAre("resource_kind", "resource_uri", "resource_id",
                                "data", "event"));
      } else {
        ASSERT_EQ(type, "deleted") << g.line;
        ASSERT_THAT(p.Keys(p.root()),
                    ElementsAre("resource_kind", "resource_uri", "resource_id",
                                "event"));
      }
      simdjson::dom::element event = p.root()["event"];
      if (p.Has("/event/fields_changed")) {
        ++with_fields_changed;
        ASSERT_THAT(p.Keys(event), ElementsAre("fields_changed", "timepoint",
                                               "published_at", "type"));
      } else {
        ASSERT_THAT(p.Keys(event),
                    ElementsAre("timepoint", "published_at", "type"));
      }
      int64_t timepoint = 0;
      ASSERT_EQ(event["timepoint"].get_int64().get(timepoint),
                simdjson::SUCCESS);
      ASSERT_EQ(timepoint, g.timepoint);
      if (has_data) {
        ASSERT_EQ(FirstUnsortedObject(p.root()["data"], "/data"), "")
            << g.line.substr(0, 2000);
      }
      const std::string resource_kind = p.String(p.root(), "/resource_kind");
      ASSERT_TRUE(AllowedResourceKinds().at(kind).count(resource_kind))
          << resource_kind;
      const std::string uri = p.String(p.root(), "/resource_uri");
      const std::string id = p.String(p.root(), "/resource_id");
      ASSERT_FALSE(id.empty());
      switch (kind) {
        case StreamKind::kExemptions:
          ASSERT_TRUE(absl::StartsWith(uri, "company/")) << uri;
          ASSERT_TRUE(absl::EndsWith(uri, "/exemptions")) << uri;
          break;
        case StreamKind::kDisqualifiedOfficers:
          ASSERT_TRUE(absl::StartsWith(uri, "/disqualified-officers/")) << uri;
          ASSERT_FALSE(absl::StrContains(uri, "/company/"));
          break;
        case StreamKind::kCompanies:
          ASSERT_EQ(uri, "/company/" + id);
          break;
        case StreamKind::kInsolvency:
          ASSERT_EQ(uri, "/company/" + id + "/insolvency");
          break;
        default:
          ASSERT_TRUE(absl::StartsWith(uri, "/company/")) << uri;
          ASSERT_TRUE(absl::EndsWith(uri, "/" + id)) << uri;
      }
      if (kind == StreamKind::kFilings && has_data) {
        ASSERT_EQ(p.String(p.root(), "/data/transaction_id"), id);
      }
      if (has_data && kind != StreamKind::kExemptions &&
          kind != StreamKind::kInsolvency) {
        ASSERT_EQ(p.String(p.root(), "/data/links/self"), uri);
      }
    }
    EXPECT_GT(deleted, 0);
    if (kind == StreamKind::kFilings) {
      EXPECT_GT(with_fields_changed, 0);
    } else {
      EXPECT_EQ(with_fields_changed, 0);
    }
  }
}

TEST(EventGeneratorTest, TimepointsStrictlyIncreaseWithGapsAndDuplicates) {
  for (StreamKind kind : AllKinds()) {
    SCOPED_TRACE(StreamName(kind));
    auto events = Generate(kind, 3, 4000);
    EXPECT_EQ(events.front().timepoint, DefaultFirstTimepoint(kind));
    int gaps = 0;
    for (size_t i = 1; i < events.size(); ++i) {
      ASSERT_GT(events[i].timepoint, events[i - 1].timepoint);
      if (events[i].timepoint > events[i - 1].timepoint + 1) ++gaps;
    }
    EXPECT_GT(gaps, 10);
    // A duplicate re-emits the same envelope and data at a new timepoint.
    std::map<std::string, int> bodies;
    for (const Generated& g : events) {
      ++bodies[g.line.substr(0, g.line.find("\"event\":{"))];
    }
    int repeated = 0;
    for (const auto& [body, count] : bodies) {
      if (count > 1) ++repeated;
    }
    EXPECT_GT(repeated, 10);
  }
}

TEST(EventGeneratorTest, FirstTimepointAndSkipAreHonoured) {
  GeneratorOptions options;
  options.first_timepoint = 1000;
  options.gap_probability = 0;
  EventGenerator gen(StreamKind::kCharges, 1, options);
  std::string line;
  EXPECT_EQ(gen.last_timepoint(), 999);
  EXPECT_EQ(gen.Next(kStart, &line), 1000);
  EXPECT_EQ(gen.Next(kStart, &line), 1001);
  gen.SkipTimepoints(50);
  EXPECT_EQ(gen.Next(kStart, &line), 1052);
  EXPECT_EQ(gen.Next(kStart, &line), 1053);
  EXPECT_EQ(gen.last_timepoint(), 1053);
}

TEST(EventGeneratorTest, PublishedAtStylesPerStream) {
  const absl::Time t = absl::FromUnixSeconds(1'659'453'661) +
                       absl::Microseconds(704'338);  // 2022-08-02T15:21:01Z
  auto published_at = [&](StreamKind kind, GeneratorOptions options = {}) {
    EventGenerator gen(kind, 1, std::move(options));
    std::set<std::string> seen;
    std::string line;
    for (int i = 0; i < 200; ++i) {
      gen.Next(t, &line);
      Parsed p(line);
      seen.insert(p.String(p.root(), "/event/published_at"));
    }
    return seen;
  };
  EXPECT_THAT(published_at(StreamKind::kCompanies),
              ElementsAre("2022-08-02T15:21:01"));
  EXPECT_THAT(published_at(StreamKind::kInsolvency),
              ElementsAre("2022-08-02T16:21:01.704338+01:00"));
  EXPECT_THAT(
      published_at(StreamKind::kCharges),
      ElementsAre("2022-08-02T15:21:01", "2022-08-02T15:21:01.704338Z"));
  GeneratorOptions all;
  all.published_at_formats = {PublishedAtFormat::kPlainUtc,
                              PublishedAtFormat::kMicrosZ,
                              PublishedAtFormat::kMicrosOffset};
  EXPECT_EQ(published_at(StreamKind::kFilings, all).size(), 3u);
}

TEST(EventGeneratorTest, StringTypedNumbersWhereTheStreamHasThem) {
  int profiles = 0;
  for (const Generated& g : Generate(StreamKind::kCompanies, 5, 300)) {
    Parsed p(g.line);
    if (!p.Has("/data")) continue;
    ++profiles;
    std::string_view day, month;
    ASSERT_EQ(p.root()
                  .at_pointer("/data/accounts/accounting_reference_date/day")
                  .get_string()
                  .get(day),
              simdjson::SUCCESS)
        << g.line;
    ASSERT_EQ(p.root()
                  .at_pointer("/data/accounts/accounting_reference_date/month")
                  .get_string()
                  .get(month),
              simdjson::SUCCESS);
    EXPECT_EQ(month.size(), 2u);
  }
  EXPECT_GT(profiles, 250);
  int cases = 0;
  for (const Generated& g : Generate(StreamKind::kInsolvency, 5, 300)) {
    Parsed p(g.line);
    if (!p.Has("/data")) continue;
    std::string_view number;
    ASSERT_EQ(
        p.root().at_pointer("/data/cases/0/number").get_string().get(number),
        simdjson::SUCCESS)
        << g.line;
    simdjson::dom::array status;
    ASSERT_EQ(p.root().at_pointer("/data/status").get_array().get(status),
              simdjson::SUCCESS);
    ++cases;
  }
  EXPECT_GT(cases, 250);
}

TEST(EventGeneratorTest, DeletedEventsComeWithAndWithoutData) {
  GeneratorOptions options;
  options.delete_probability = 0.2;
  for (StreamKind kind :
       {StreamKind::kCompanies, StreamKind::kOfficers, StreamKind::kPsc}) {
    int with_data = 0, without_data = 0;
    for (const Generated& g : Generate(kind, 9, 1000, options)) {
      if (!absl::StrContains(g.line, "\"type\":\"deleted\"}}")) continue;
      if (absl::StrContains(g.line, "\"data\":{")) {
        ++with_data;
      } else {
        ++without_data;
      }
    }
    EXPECT_GT(with_data, 5) << StreamName(kind);
    EXPECT_GT(without_data, 5) << StreamName(kind);
  }
}

TEST(EventGeneratorTest, NonAsciiNamesAppear) {
  GeneratorOptions options;
  options.non_ascii_probability = 0.3;
  std::set<std::string> names;
  bool welsh = false;
  for (const Generated& g :
       Generate(StreamKind::kCompanies, 11, 2000, options)) {
    Parsed p(g.line);
    const std::string name = p.String(p.root(), "/data/company_name");
    if (absl::StrContains(name, "CYFYNGEDIG")) welsh = true;
    for (unsigned char c : name) {
      if (c >= 0x80) {
        names.insert(name);
        break;
      }
    }
  }
  EXPECT_TRUE(welsh);
  EXPECT_GT(names.size(), 5u);
  // Officer names too.
  int accented_officers = 0;
  for (const Generated& g : Generate(StreamKind::kOfficers, 11, 500, options)) {
    Parsed p(g.line);
    for (unsigned char c : p.String(p.root(), "/data/name")) {
      if (c >= 0x80) {
        ++accented_officers;
        break;
      }
    }
  }
  EXPECT_GT(accented_officers, 10);
}

TEST(EventGeneratorTest, LargeEventsOnCompaniesAndCharges) {
  GeneratorOptions options;
  options.large_event_probability = 0.05;
  for (StreamKind kind : {StreamKind::kCompanies, StreamKind::kCharges}) {
    int large = 0;
    for (const Generated& g : Generate(kind, 13, 600, options)) {
      if (g.line.size() >= 90 * 1024) {
        ++large;
        EXPECT_LT(g.line.size(), 200u * 1024);
        Parsed p(g.line);
        ASSERT_TRUE(p.ok());
      }
    }
    EXPECT_GT(large, 3) << StreamName(kind);
  }
  // Off by default for the others and rare by default.
  int large = 0;
  for (const Generated& g : Generate(StreamKind::kCompanies, 13, 600)) {
    if (g.line.size() >= 90 * 1024) ++large;
  }
  EXPECT_LT(large, 5);
}

TEST(EventGeneratorTest, GoHtmlEscapingIsOptional) {
  GeneratorOptions escaped;
  escaped.go_html_escape = true;
  int raw_ampersands = 0;
  for (const Generated& g : Generate(StreamKind::kCharges, 17, 2000)) {
    if (absl::StrContains(g.line, "&")) ++raw_ampersands;
  }
  EXPECT_GT(raw_ampersands, 0);
  int escaped_lines = 0;
  for (const Generated& g : Generate(StreamKind::kCharges, 17, 2000, escaped)) {
    ASSERT_EQ(g.line.find_first_of("<>&"), std::string::npos) << g.line;
    if (absl::StrContains(g.line, "\\u0026") &&
        absl::StrContains(g.line, "\\u003c")) {
      ++escaped_lines;
      Parsed p(g.line);
      EXPECT_TRUE(absl::StrContains(
          p.String(p.root(), "/data/particulars/description"), "& buildings"));
    }
  }
  EXPECT_EQ(escaped_lines, raw_ampersands);
}

TEST(EventGeneratorTest, ProfileOnlyEmitsRealisticCompanyProfiles) {
  GeneratorOptions options;
  options.profile_only = true;
  options.delete_probability = 0.5;       // ignored in profile-only mode
  options.large_event_probability = 0.5;  // ignored too
  size_t total = 0;
  auto events = Generate(StreamKind::kCompanies, 19, 5000, options);
  for (const Generated& g : events) {
    ASSERT_TRUE(
        absl::StartsWith(g.line, "{\"resource_kind\":\"company-profile\""));
    ASSERT_TRUE(absl::EndsWith(g.line, "\"type\":\"changed\"}}"));
    ASSERT_TRUE(absl::StrContains(g.line, "\"data\":{"));
    ASSERT_GE(g.line.size(), 1000u) << g.line;
    ASSERT_LE(g.line.size(), 1700u) << g.line;
    total += g.line.size();
  }
  const double mean = static_cast<double>(total) / events.size();
  EXPECT_GT(mean, 1150);
  EXPECT_LT(mean, 1450);
}

TEST(EventGeneratorTest, CompaniesComeFromABoundedPool) {
  GeneratorOptions options;
  options.company_pool_size = 50;
  options.delete_probability = 0.02;
  std::map<std::string, std::vector<std::string>> types_by_company;
  for (const Generated& g :
       Generate(StreamKind::kCompanies, 23, 2000, options)) {
    Parsed p(g.line);
    types_by_company[p.String(p.root(), "/resource_id")].push_back(
        p.String(p.root(), "/event/type"));
  }
  int deletions = 0, busy = 0;
  for (const auto& [number, types] : types_by_company) {
    if (types.size() >= 5) ++busy;
    for (const std::string& t : types) deletions += t == "deleted";
  }
  // A deleted company's slot is reused by a new company number.
  EXPECT_LE(types_by_company.size(), 50u + deletions);
  EXPECT_GT(deletions, 0);
  EXPECT_GE(busy, 40);
  // Other streams draw from the same pool.
  std::set<std::string> companies;
  for (const auto& [number, types] : types_by_company) companies.insert(number);
  int shared = 0;
  for (const Generated& g : Generate(StreamKind::kFilings, 23, 200, options)) {
    Parsed p(g.line);
    const std::string uri = p.String(p.root(), "/resource_uri");
    const std::string number = uri.substr(9, uri.find('/', 9) - 9);
    shared += companies.count(number) > 0;
  }
  EXPECT_GT(shared, 150);
}

TEST(EventGeneratorTest, MatchesTheSampleEnvelopeShapes) {
  // The companies sample (E1) and ours share the same data keys at the top.
  auto events = Generate(StreamKind::kCompanies, 29, 50);
  bool found = false;
  for (const Generated& g : events) {
    Parsed p(g.line);
    if (!p.Has("/data")) continue;
    std::vector<std::string> keys = p.Keys(p.root()["data"]);
    std::set<std::string> key_set(keys.begin(), keys.end());
    for (const char* required :
         {"accounts", "can_file", "company_name", "company_number",
          "company_status", "confirmation_statement", "date_of_creation",
          "etag", "jurisdiction", "links", "registered_office_address",
          "sic_codes", "type"}) {
      ASSERT_TRUE(key_set.count(required)) << required << " in " << g.line;
    }
    found = true;
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace chstream::ingest::sim
