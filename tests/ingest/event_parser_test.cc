#include "ingest/event_parser.h"

#include <cstdint>
#include <fstream>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ingest/struct_encoder.h"

namespace chstream::ingest {
namespace {

using ::chstream::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

const absl::Time kReceived = absl::FromUnixSeconds(1'700'000'000);

absl::Time Utc(int y, int mo, int d, int h, int mi, int s) {
  return absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, s),
                         absl::UTCTimeZone());
}

std::vector<std::string> ReadSampleLines() {
  std::ifstream in("tests/ingest/testdata/upstream-events.ndjson");
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

// The data object's text, located independently of the parser (in every
// sample "data" comes right before "event").
std::string DataText(const std::string& line) {
  const size_t start = line.find("\"data\":") + 7;
  const size_t end = line.rfind(",\"event\":");
  return line.substr(start, end - start);
}

storage::Event ParseOk(EventParser& parser, std::string_view stream,
                       std::string_view line) {
  auto result = parser.Parse(stream, line, kReceived);
  if (auto* error = std::get_if<ParseError>(&result)) {
    ADD_FAILURE() << "unexpected error: " << error->reason << "\n" << line;
    return storage::Event();
  }
  return std::get<storage::Event>(std::move(result));
}

ParseError ParseFails(EventParser& parser, std::string_view line) {
  auto result = parser.Parse("officers", line, kReceived);
  if (std::holds_alternative<storage::Event>(result)) {
    ADD_FAILURE() << "unexpectedly parsed: " << line;
    return ParseError();
  }
  return std::get<ParseError>(std::move(result));
}

// A valid officers event with the given pieces substituted.
std::string Line(
    const std::string& envelope_extra = "",
    const std::string& data = R"({"name":"A"})",
    const std::string& event =
        R"({"timepoint":5,"published_at":"2022-08-02T15:21:06","type":"changed"})") {
  return R"({"resource_kind":"company-officers","resource_uri":"/company/00000001/appointments/x","resource_id":"x",)" +
         envelope_extra + R"("data":)" + data + R"(,"event":)" + event + "}";
}

TEST(EventParserTest, CompanyProfileSampleE1AllFields) {
  const std::vector<std::string> lines = ReadSampleLines();
  ASSERT_EQ(lines.size(), 7u);
  EventParser parser;
  const storage::Event event = ParseOk(parser, "companies", lines[0]);

  storage::Event expected;
  expected.position = 0;
  expected.stream = "companies";
  expected.timepoint = 47695461;
  expected.type = storage::EventType::kChanged;
  expected.resource_kind = "company-profile";
  expected.resource_id = "SC571653";
  expected.resource_uri = "/company/SC571653";
  expected.company_number = "SC571653";
  expected.published_at = Utc(2022, 8, 2, 15, 21, 6);
  expected.received_at = kReceived;
  // The data as a Struct only (storage/event.h).
  expected.data_pb = *JsonObjectToStructBytes(DataText(lines[0]));
  storage::CompanyFields company;
  company.company_name = "FC KIOSKS LTD";
  company.company_status = "active";
  company.company_type = "ltd";
  company.jurisdiction = "scotland";
  company.date_of_creation = "2017-07-20";
  company.registered_office_address.address_line_1 = "Suite 4f, Ingram House";
  company.registered_office_address.address_line_2 = "227 Ingram Street";
  company.registered_office_address.country = "Scotland";
  company.registered_office_address.locality = "Glasgow";
  company.registered_office_address.postal_code = "G1 1DA";
  company.sic_codes = {"56290"};
  expected.company = company;

  // Field by field for readable failures, then everything at once.
  EXPECT_EQ(event.position, 0u);
  EXPECT_EQ(event.stream, expected.stream);
  EXPECT_EQ(event.timepoint, expected.timepoint);
  EXPECT_EQ(event.type, expected.type);
  EXPECT_EQ(event.resource_kind, expected.resource_kind);
  EXPECT_EQ(event.resource_id, expected.resource_id);
  EXPECT_EQ(event.resource_uri, expected.resource_uri);
  EXPECT_EQ(event.company_number, expected.company_number);
  EXPECT_EQ(event.published_at, expected.published_at);
  EXPECT_EQ(event.received_at, expected.received_at);
  EXPECT_THAT(event.fields_changed, IsEmpty());
  EXPECT_EQ(DataText(lines[0]).size(), 1105u);  // of the 1,293-byte line
  EXPECT_EQ(event.data_json, "");
  EXPECT_EQ(event.data_pb, expected.data_pb);
  ASSERT_TRUE(event.company.has_value());
  EXPECT_EQ(event.company->company_name, company.company_name);
  EXPECT_EQ(event.company->registered_office_address,
            company.registered_office_address);
  EXPECT_EQ(event.company->sic_codes, company.sic_codes);
  EXPECT_TRUE(event == expected);
}

TEST(EventParserTest, EverySample) {
  struct Expected {
    const char* stream;
    const char* kind;
    const char* company_number;
    int64_t timepoint;
    absl::Time published_at;
    storage::EventType type;
    std::vector<std::string> fields_changed;
  };
  const Expected expected[] = {
      {"companies",
       "company-profile",
       "SC571653",
       47695461,
       Utc(2022, 8, 2, 15, 21, 6),
       storage::EventType::kChanged,
       {}},
      {"filings",
       "filing-history",
       "02154654",
       99061051,
       Utc(2022, 8, 2, 16, 17, 2),
       storage::EventType::kChanged,
       {}},
      {"charges",
       "company-charges",
       "05155434",
       1487036,
       Utc(2022, 8, 3, 12, 58, 1),
       storage::EventType::kChanged,
       {}},
      {"insolvency-cases",
       "company-insolvency",
       "11519482",
       1293709,
       Utc(2022, 8, 2, 13, 51, 1) + absl::Microseconds(704338),
       storage::EventType::kChanged,
       {}},
      {"persons-with-significant-control",
       "company-psc-individual",
       "14271677",
       4091408,
       Utc(2022, 8, 2, 16, 28, 1),
       storage::EventType::kChanged,
       {}},
      {"filings",
       "filing-history",
       "02154654",
       99061230,
       Utc(2022, 8, 2, 16, 31, 40),
       storage::EventType::kChanged,
       {"links.document_metadata"}},
      {"officers",
       "company-officers",
       "07217743",
       6521990,
       Utc(2022, 8, 2, 15, 40, 12),
       storage::EventType::kDeleted,
       {}},
  };
  const std::vector<std::string> lines = ReadSampleLines();
  ASSERT_EQ(lines.size(), 7u);
  EventParser parser;  // one parser for all: exercises reuse
  for (size_t i = 0; i < lines.size(); ++i) {
    SCOPED_TRACE(lines[i]);
    const storage::Event event = ParseOk(parser, expected[i].stream, lines[i]);
    EXPECT_EQ(event.stream, expected[i].stream);
    EXPECT_EQ(event.resource_kind, expected[i].kind);
    EXPECT_EQ(event.company_number, expected[i].company_number);
    EXPECT_EQ(event.timepoint, expected[i].timepoint);
    EXPECT_EQ(event.published_at, expected[i].published_at);
    EXPECT_EQ(event.type, expected[i].type);
    EXPECT_EQ(event.fields_changed, expected[i].fields_changed);
    EXPECT_EQ(event.data_json, "");
    EXPECT_EQ(event.data_pb, *JsonObjectToStructBytes(DataText(lines[i])));
    EXPECT_EQ(event.company.has_value(), i == 0);
    EXPECT_EQ(event.received_at, kReceived);
    EXPECT_EQ(event.position, 0u);
  }
}

TEST(EventParserTest, DeletedEventWithoutDataOrWithNullData) {
  EventParser parser;
  for (const char* data : {"", R"("data":null,)"}) {
    const std::string line = absl::StrCat(
        R"({"resource_kind":"company-profile","resource_uri":"/company/01234567","resource_id":"01234567",)",
        data,
        R"("event":{"timepoint":7,"published_at":"2022-08-02T15:21:06","type":"deleted"}})");
    const storage::Event event = ParseOk(parser, "companies", line);
    EXPECT_EQ(event.type, storage::EventType::kDeleted);
    EXPECT_EQ(event.company_number, "01234567");
    EXPECT_EQ(event.data_json, "");
    EXPECT_EQ(event.data_pb, "");
    EXPECT_FALSE(event.company.has_value());
  }
}

TEST(EventParserTest, TimepointAsStringOfDigits) {
  EventParser parser;
  const storage::Event event = ParseOk(
      parser, "officers",
      Line(
          "", R"({"name":"A"})",
          R"({"timepoint":"47695461","published_at":"2022-08-02T15:21:06","type":"changed"})"));
  EXPECT_EQ(event.timepoint, 47695461);
}

TEST(EventParserTest, TimepointStringLimits) {
  EventParser parser;
  const auto timepoint_of = [&](const std::string& tp) {
    return ParseOk(
               parser, "officers",
               Line(
                   "", R"({"name":"A"})",
                   R"({"timepoint":)" + tp +
                       R"(,"published_at":"2022-08-02T15:21:06","type":"changed"})"))
        .timepoint;
  };
  EXPECT_EQ(timepoint_of(R"("0")"), 0);
  EXPECT_EQ(timepoint_of(R"("000")"), 0);
  EXPECT_EQ(timepoint_of(R"("0000000000000000000000042")"), 42);
  EXPECT_EQ(timepoint_of(R"("9223372036854775807")"), INT64_MAX);
  EXPECT_EQ(timepoint_of("9223372036854775807"), INT64_MAX);
  EXPECT_EQ(timepoint_of("0"), 0);
}

TEST(EventParserTest, UnknownKeysAndFieldOrderDoNotMatter) {
  EventParser parser;
  const std::string line =
      R"({"event":{"type":"changed","extra":[1,{"x":null}],"published_at":"2022-08-02T15:21:06Z","timepoint":9},)"
      R"("zzz":{"nested":[true]},"data":{"b":1},"resource_id":"i","resource_uri":"/company/ab12/x","resource_kind":"k"})";
  const storage::Event event = ParseOk(parser, "officers", line);
  EXPECT_EQ(event.timepoint, 9);
  EXPECT_EQ(event.resource_kind, "k");
  EXPECT_EQ(event.company_number, "AB12");
  EXPECT_EQ(event.data_pb, *JsonObjectToStructBytes(R"({"b":1})"));
}

TEST(EventParserTest, DataIsEncodedFromTheBytesAsSent) {
  EventParser parser;
  // Whitespace inside and around data, Go's HTML escapes, escaped quotes and
  // braces inside strings.
  const std::string data =
      "{ \"name\" : \"A \\u0026 B \\\"}{\\\" LTD\",\n\t\"n\": [1, 2.50, {}] }";
  const std::string line = absl::StrCat(
      R"(  {"resource_kind":"company-officers", "resource_uri":"/company/1/appointments/x","resource_id":"x",  "data" :  )",
      data,
      R"(  ,"event":{"timepoint":5,"published_at":"2022-08-02T15:21:06","type":"changed"}}  )");
  const storage::Event event = ParseOk(parser, "officers", line);
  EXPECT_EQ(event.data_json, "");
  EXPECT_EQ(event.data_pb, *JsonObjectToStructBytes(data));
  // The Struct has the unescaped text.
  EXPECT_THAT(event.data_pb, HasSubstr("A & B \"}{\" LTD"));
}

// An empty object has an empty Struct encoding: its text is kept instead,
// exactly as sent, so that the event still carries data.
TEST(EventParserTest, EmptyDataKeepsItsText) {
  EventParser parser;
  for (const std::string data : {"{}", "{ \n }"}) {
    const std::string line = absl::StrCat(
        R"({"resource_kind":"k","resource_uri":"/company/1/x","data" : )", data,
        R"( ,"resource_id":"x","event":{"timepoint":5,"published_at":"2022-08-02T15:21:06","type":"changed"}})");
    const storage::Event event = ParseOk(parser, "officers", line);
    EXPECT_EQ(event.data_json, data);
    EXPECT_EQ(event.data_pb, "");
  }
}

TEST(EventParserTest, LargeIntegerInDataIsAccepted) {
  EventParser parser;
  const storage::Event event =
      ParseOk(parser, "officers", Line("", R"({"big":123456789012345680000})"));
  EXPECT_EQ(event.data_json, "");
  EXPECT_EQ(event.data_pb,
            *JsonObjectToStructBytes(R"({"big":123456789012345680000})"));
}

TEST(EventParserTest, CompanyNumberNormalisation) {
  EventParser parser;
  struct Case {
    std::string uri;
    std::string data;
    std::string expected;
  };
  const Case cases[] = {
      // From data.company_number when it is a non-blank string.
      {"/company/00000001/appointments/x", R"({"company_number":" sc571653 "})",
       "SC571653"},
      // Otherwise from the URI, also normalised.
      {"/company/ni000001/appointments/x", R"({"company_number":null})",
       "NI000001"},
      {"/company/00000002/charges/y", R"({"company_number":"  "})", "00000002"},
      {"/company/00000003", R"({})", "00000003"},
      {"company/00000004/exemptions", R"({})", "00000004"},
      {"/disqualified-officers/natural/abc", R"({})", ""},
  };
  for (const Case& c : cases) {
    const std::string line = absl::StrCat(
        R"({"resource_kind":"k","resource_uri":")", c.uri,
        R"(","resource_id":"x","data":)", c.data,
        R"(,"event":{"timepoint":5,"published_at":"2022-08-02T15:21:06","type":"changed"}})");
    EXPECT_EQ(ParseOk(parser, "s", line).company_number, c.expected) << line;
  }
}

// A company-profile line with `data` and `id` substituted.
std::string ProfileLine(const std::string& id, const std::string& data) {
  return absl::StrCat(
      R"({"resource_kind":"company-profile","resource_uri":"/company/X1","resource_id":)",
      id, R"(,"data":)", data,
      R"(,"event":{"timepoint":5,"published_at":"2022-08-02T15:21:06","type":"changed"}})");
}

TEST(EventParserTest, CompanyFieldsToleratesMissingAndNull) {
  EventParser parser;
  const storage::Event event = ParseOk(
      parser, "companies",
      ProfileLine(
          R"("X1")",
          R"({"company_number":"X1","company_name":null,"company_status":"dissolved",)"
          R"("date_of_cessation":"2020-01-01","registered_office_address":{"premises":"1","region":null},)"
          R"("sic_codes":["1","3"]})"));
  ASSERT_TRUE(event.company.has_value());
  storage::CompanyFields expected;
  expected.company_status = "dissolved";
  expected.date_of_cessation = "2020-01-01";
  expected.registered_office_address.premises = "1";
  expected.sic_codes = {"1", "3"};
  EXPECT_EQ(*event.company, expected);
  EXPECT_EQ(event.company_number, "X1");

  // A repeated name: the first is read.
  const storage::Event repeated = ParseOk(
      parser, "companies",
      ProfileLine(R"("X1")",
                  R"({"company_name":"FIRST","company_number":"X1",)"
                  R"("company_name":"SECOND"})"));
  ASSERT_TRUE(repeated.company.has_value());
  EXPECT_EQ(repeated.company->company_name, "FIRST");
}

// Issue 9 item 6: a field chstream extracts, of the wrong type, used to be
// accepted (and stored as empty or taken from elsewhere); now the line is
// dead-lettered with a reason naming the field.
TEST(EventParserTest, CompanyProfileFieldsOfTheWrongTypeAreRejected) {
  EventParser parser;
  struct Case {
    std::string id;
    std::string data;
    std::string reason;
  };
  const Case cases[] = {
      {R"("01234567")", R"({"company_number":{"oops":[1,2,3]}})",
       "data.company_number must be a string, got object"},
      {R"("01234567")", R"({"company_name":"A"})",
       "data.company_number missing (required for company-profile)"},
      {R"("01234567")", R"({"company_number":"01234568"})",
       "data.company_number \"01234568\" differs from resource_id "
       "\"01234567\""},
      {R"("X1")", R"({"company_number":"X1","company_name":5})",
       "data.company_name must be a string, got integer"},
      {R"("X1")", R"({"company_number":"X1","type":["ltd"]})",
       "data.type must be a string, got array"},
      {R"("X1")",
       R"({"company_number":"X1","registered_office_address":"nowhere"})",
       "data.registered_office_address must be an object, got string"},
      {R"("X1")",
       R"({"company_number":"X1","registered_office_address":{"region":7}})",
       "data.registered_office_address.region must be a string, got integer"},
      {R"("X1")", R"({"company_number":"X1","sic_codes":"x"})",
       "data.sic_codes must be an array of strings, got string"},
      {R"("X1")", R"({"company_number":"X1","sic_codes":["1",2]})",
       "data.sic_codes[1] must be a string, got integer"},
      // Several wrong: the first in the documented field order is named,
      // whatever the order in the line (the fields are found in one pass).
      {R"("X1")",
       R"({"sic_codes":7,"registered_office_address":{"po_box":1,"premises":2},)"
       R"("type":1,"company_number":"X1"})",
       "data.type must be a string, got integer"},
      {R"("X1")",
       R"({"company_number":"X1","registered_office_address":{"po_box":1,"premises":2}})",
       "data.registered_office_address.premises must be a string, got "
       "integer"},
      // A repeated name: the first is read (as obj["name"] does).
      {R"("X1")", R"({"company_number":"X1","type":1,"type":"ltd"})",
       "data.type must be a string, got integer"},
  };
  for (const Case& c : cases) {
    const ParseError error = ParseFails(parser, ProfileLine(c.id, c.data));
    EXPECT_EQ(error.reason, c.reason) << c.data;
    EXPECT_EQ(error.timepoint, 5) << c.data;
  }
}

TEST(EventParserTest, CompanyNumberOfOtherKindsMustBeAString) {
  EventParser parser;
  const ParseError error =
      ParseFails(parser, Line("", R"({"company_number":42})"));
  EXPECT_EQ(error.reason, "data.company_number must be a string, got integer");
  EXPECT_EQ(error.timepoint, 5);
}

// Nests `depth` objects: depth 1 is {"a":1}.
std::string NestedData(int depth) {
  std::string data = "1";
  for (int i = 0; i < depth; ++i) data = absl::StrCat(R"({"a":)", data, "}");
  return data;
}

// Issue 9 item 8: data nested deeper than 32 levels used to be encoded into
// a Struct that protobuf parsers (recursion limit 100, two levels per JSON
// level) reject, so that a client could not read the event at all.
TEST(EventParserTest, DataDeeperThan32LevelsIsRejected) {
  EventParser parser;
  const storage::Event ok =
      ParseOk(parser, "officers", Line("", NestedData(32)));
  EXPECT_EQ(ok.data_pb, *JsonObjectToStructBytes(NestedData(32)));
  EXPECT_EQ(ParseFails(parser, Line("", NestedData(33))).reason,
            "data nested deeper than 32 levels");
  // Arrays count as levels too.
  std::string arrays = "[1]";
  for (int i = 1; i < 32; ++i) arrays = absl::StrCat("[", arrays, "]");
  EXPECT_EQ(ParseFails(parser, Line("", absl::StrCat(R"({"a":)", arrays, "}")))
                .reason,
            "data nested deeper than 32 levels");
  // Far deeper still: rejected by the JSON parser's own depth limit.
  EXPECT_THAT(ParseFails(parser, Line("", NestedData(5000))).reason,
              HasSubstr("nesting too deep"));
  // Data at the limit after a deeper line, and the other way round (the
  // parser takes a second JSON parser for lines deeper than data may be).
  EXPECT_EQ(ParseOk(parser, "officers", Line("", NestedData(32))).data_pb,
            *JsonObjectToStructBytes(NestedData(32)));
  EXPECT_EQ(ParseFails(parser, Line("", NestedData(33))).reason,
            "data nested deeper than 32 levels");
  // Depth elsewhere in the envelope is not data's: an unknown member
  // nested 40 deep is ignored, as it always was.
  const storage::Event deep_elsewhere = ParseOk(
      parser, "officers",
      Line(absl::StrCat(R"("extra":)", NestedData(40), ","), NestedData(3)));
  EXPECT_EQ(deep_elsewhere.data_pb, *JsonObjectToStructBytes(NestedData(3)));
}

TEST(EventParserTest, ParserIsReusableAcrossSizes) {
  EventParser parser;
  const std::string big_data =
      absl::StrCat(R"({"blob":")", std::string(200000, 'q'), R"("})");
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(ParseOk(parser, "officers", Line("", big_data)).data_pb,
              *JsonObjectToStructBytes(big_data));
    EXPECT_EQ(ParseOk(parser, "officers", Line()).data_pb,
              *JsonObjectToStructBytes(R"({"name":"A"})"));
    EXPECT_THAT(ParseFails(parser, "{").reason, StartsWith("invalid JSON"));
  }
}

struct MalformedCase {
  std::string line;
  std::string reason;
  std::optional<int64_t> timepoint;
};

// Verifies the dead-letter corpus: every malformed line gets its exact
// reason and, whenever event.timepoint was readable, the timepoint.
TEST(EventParserTest, MalformedCorpus) {
  const std::string ok_event =
      R"({"timepoint":5,"published_at":"2022-08-02T15:21:06","type":"changed"})";
  const auto with_event = [](const std::string& event) {
    return Line("", R"({"name":"A"})", event);
  };
  const std::vector<MalformedCase> cases = {
      // Not JSON at all, or broken JSON.
      {"", "invalid JSON at byte 0: empty document", std::nullopt},
      {"not json", "invalid JSON at byte 0: invalid literal, expected null",
       std::nullopt},
      {R"({"resource_kind":)",
       "invalid JSON at byte 17: unexpected end of input, expected a value",
       std::nullopt},
      {R"({"a" 1})",
       "invalid JSON at byte 5: expected ':' after object key, got '1'",
       std::nullopt},
      {R"({"a":1,})",
       "invalid JSON at byte 7: expected '\"' to start an object key, got '}'",
       std::nullopt},
      {R"({"a":[1 2]})",
       "invalid JSON at byte 8: expected ',' or ']' in array, got '2'",
       std::nullopt},
      {R"({"a":1}x)",
       "invalid JSON at byte 7: unexpected content after the JSON value",
       std::nullopt},
      {R"({"a":"unterminated})", "invalid JSON at byte 5: unterminated string",
       std::nullopt},
      {"{\"a\":\"tab\there\"}",
       "invalid JSON at byte 9: unescaped control character in string",
       std::nullopt},
      {"{\"a\":\"\xC3\x28\"}", "invalid JSON at byte 6: invalid UTF-8",
       std::nullopt},
      {R"({"a":"\x"})", "invalid JSON at byte 6: invalid escape sequence \\x",
       std::nullopt},
      {R"({"a":"\ud800"})",
       "invalid JSON at byte 6: invalid \\u escape: unpaired high surrogate",
       std::nullopt},
      {R"({"a":01})", "invalid JSON at byte 5: invalid number (leading zero)",
       std::nullopt},
      {R"({"a":1e400})", "invalid JSON at byte 5: number out of range",
       std::nullopt},
      {R"({"a":tru})", "invalid JSON at byte 5: invalid literal, expected true",
       std::nullopt},
      // Valid JSON, wrong shape.
      {"[1,2]", "line is not a JSON object, got array", std::nullopt},
      {R"("text")", "line is not a JSON object, got string", std::nullopt},
      {absl::StrCat(
           R"({"resource_uri":"/company/1","resource_id":"x","data":{},"event":)",
           ok_event, "}"),
       "resource_kind missing", 5},
      {absl::StrCat(
           R"({"resource_kind":3,"resource_uri":"/company/1","resource_id":"x","data":{},"event":)",
           ok_event, "}"),
       "resource_kind must be a string, got integer", 5},
      {absl::StrCat(
           R"({"resource_kind":"","resource_uri":"/company/1","resource_id":"x","data":{},"event":)",
           ok_event, "}"),
       "resource_kind is empty", 5},
      {absl::StrCat(
           R"({"resource_kind":"k","resource_id":"x","data":{},"event":)",
           ok_event, "}"),
       "resource_uri missing", 5},
      {absl::StrCat(
           R"({"resource_kind":"k","resource_uri":["/company/1"],"resource_id":"x","data":{},"event":)",
           ok_event, "}"),
       "resource_uri must be a string, got array", 5},
      {absl::StrCat(
           R"({"resource_kind":"k","resource_uri":"/company/1","resource_id":null,"data":{},"event":)",
           ok_event, "}"),
       "resource_id must be a string, got null", 5},
      {R"({"resource_kind":"k","resource_uri":"/company/1","resource_id":"x","data":{}})",
       "event missing", std::nullopt},
      {R"({"resource_kind":"k","resource_uri":"/company/1","resource_id":"x","data":{},"event":"changed"})",
       "event must be an object, got string", std::nullopt},
      {absl::StrCat(
           R"({"resource_kind":"k","resource_kind":"k","resource_uri":"/company/1","resource_id":"x","data":{},"event":)",
           ok_event, "}"),
       "duplicate key \"resource_kind\"", 5},
      // event.timepoint.
      {with_event(R"({"published_at":"2022-08-02T15:21:06","type":"changed"})"),
       "event.timepoint missing", std::nullopt},
      {with_event(
           R"({"timepoint":null,"published_at":"2022-08-02T15:21:06","type":"changed"})"),
       "event.timepoint must be an integer, got null", std::nullopt},
      {with_event(
           R"({"timepoint":-1,"published_at":"2022-08-02T15:21:06","type":"changed"})"),
       "event.timepoint must not be negative, got -1", std::nullopt},
      {with_event(
           R"({"timepoint":1.5,"published_at":"2022-08-02T15:21:06","type":"changed"})"),
       "event.timepoint must be an integer, got 1.5", std::nullopt},
      {with_event(
           R"({"timepoint":1e3,"published_at":"2022-08-02T15:21:06","type":"changed"})"),
       "event.timepoint must be an integer, got 1000", std::nullopt},
      {with_event(
           R"({"timepoint":9223372036854775808,"published_at":"2022-08-02T15:21:06","type":"changed"})"),
       "event.timepoint out of range, got 9223372036854775808", std::nullopt},
      {with_event(
           R"({"timepoint":99999999999999999999,"published_at":"2022-08-02T15:21:06","type":"changed"})"),
       "event.timepoint out of range, got 1e+20", std::nullopt},
      {with_event(
           R"({"timepoint":"12a","published_at":"2022-08-02T15:21:06","type":"changed"})"),
       "event.timepoint must be an integer or a string of digits, got \"12a\"",
       std::nullopt},
      {with_event(
           R"({"timepoint":"","published_at":"2022-08-02T15:21:06","type":"changed"})"),
       "event.timepoint must be an integer or a string of digits, got \"\"",
       std::nullopt},
      {with_event(
           R"({"timepoint":"-5","published_at":"2022-08-02T15:21:06","type":"changed"})"),
       "event.timepoint must be an integer or a string of digits, got \"-5\"",
       std::nullopt},
      {with_event(
           R"({"timepoint":"99999999999999999999","published_at":"2022-08-02T15:21:06","type":"changed"})"),
       "event.timepoint out of range, got \"99999999999999999999\"",
       std::nullopt},
      {with_event(
           R"({"timepoint":"9223372036854775808","published_at":"2022-08-02T15:21:06","type":"changed"})"),
       "event.timepoint out of range, got \"9223372036854775808\"",
       std::nullopt},
      {with_event(
           R"({"timepoint":5,"timepoint":6,"published_at":"2022-08-02T15:21:06","type":"changed"})"),
       "duplicate key \"event.timepoint\"", 5},
      // event.published_at.
      {with_event(R"({"timepoint":5,"type":"changed"})"),
       "event.published_at missing", 5},
      {with_event(
           R"({"timepoint":5,"published_at":1659453666,"type":"changed"})"),
       "event.published_at must be a string, got integer", 5},
      {with_event(
           R"({"timepoint":5,"published_at":"2022-08-02 15:21:06","type":"changed"})"),
       "published_at not a timestamp: \"2022-08-02 15:21:06\": expected "
       "YYYY-MM-DDTHH:MM:SS",
       5},
      {with_event(
           R"({"timepoint":5,"published_at":"2022-02-30T15:21:06","type":"changed"})"),
       "published_at not a timestamp: \"2022-02-30T15:21:06\": day out of "
       "range",
       5},
      {with_event(
           R"({"timepoint":5,"published_at":"yesterday","type":"changed"})"),
       "published_at not a timestamp: \"yesterday\": expected "
       "YYYY-MM-DDTHH:MM:SS",
       5},
      // event.type.
      {with_event(R"({"timepoint":5,"published_at":"2022-08-02T15:21:06"})"),
       "event.type missing", 5},
      {with_event(
           R"({"timepoint":5,"published_at":"2022-08-02T15:21:06","type":"updated"})"),
       "event.type must be changed or deleted, got \"updated\"", 5},
      {with_event(
           R"({"timepoint":5,"published_at":"2022-08-02T15:21:06","type":1})"),
       "event.type must be a string, got integer", 5},
      {with_event(
           R"({"timepoint":5,"published_at":"2022-08-02T15:21:06","type":"Changed"})"),
       "event.type must be changed or deleted, got \"Changed\"", 5},
      // event.fields_changed.
      {with_event(
           R"({"fields_changed":"links","timepoint":5,"published_at":"2022-08-02T15:21:06","type":"changed"})"),
       "event.fields_changed must be an array of strings, got string", 5},
      {with_event(
           R"({"fields_changed":["a",1],"timepoint":5,"published_at":"2022-08-02T15:21:06","type":"changed"})"),
       "event.fields_changed[1] must be a string, got integer", 5},
      // data.
      {absl::StrCat(
           R"({"resource_kind":"k","resource_uri":"/company/1","resource_id":"x","event":)",
           ok_event, "}"),
       "data missing (required for changed events)", 5},
      {Line("", "null"), "data must be an object, got null", 5},
      {Line("", "[1]"), "data must be an object, got array", 5},
      {Line("", R"("text")"), "data must be an object, got string", 5},
      {R"({"resource_kind":"k","resource_uri":"/company/1","resource_id":"x","data":7,)"
       R"("event":{"timepoint":5,"published_at":"2022-08-02T15:21:06","type":"deleted"}})",
       "data must be an object, got integer", 5},
  };
  EventParser parser;
  for (const MalformedCase& c : cases) {
    const ParseError error = ParseFails(parser, c.line);
    EXPECT_EQ(error.reason, c.reason) << c.line;
    EXPECT_EQ(error.timepoint, c.timepoint) << c.line;
  }
  // The parser is still fine afterwards.
  EXPECT_EQ(ParseOk(parser, "officers", Line()).timepoint, 5);
}

TEST(EventParserTest, NullFieldsChangedIsAbsent) {
  EventParser parser;
  const storage::Event event = ParseOk(
      parser, "officers",
      Line(
          "", R"({"name":"A"})",
          R"({"fields_changed":null,"timepoint":5,"published_at":"2022-08-02T15:21:06","type":"changed"})"));
  EXPECT_THAT(event.fields_changed, IsEmpty());
  const storage::Event event2 = ParseOk(
      parser, "officers",
      Line(
          "", R"({"name":"A"})",
          R"({"fields_changed":["a","b.c"],"timepoint":5,"published_at":"2022-08-02T15:21:06","type":"changed"})"));
  EXPECT_THAT(event2.fields_changed, ElementsAre("a", "b.c"));
}

TEST(ParsePublishedAtTest, EveryUpstreamFormat) {
  struct Case {
    const char* text;
    absl::Time expected;
  };
  const Case cases[] = {
      {"2021-01-22T18:28:02", Utc(2021, 1, 22, 18, 28, 2)},
      {"2022-08-02T15:21:06", Utc(2022, 8, 2, 15, 21, 6)},
      {"2022-08-03T12:58:01", Utc(2022, 8, 3, 12, 58, 1)},
      {"2022-11-15T18:59:02.333257Z",
       Utc(2022, 11, 15, 18, 59, 2) + absl::Microseconds(333257)},
      {"2022-08-02T14:51:01.704338+01:00",
       Utc(2022, 8, 2, 13, 51, 1) + absl::Microseconds(704338)},
      {"2022-08-04T00:02:01.812779+01:00",
       Utc(2022, 8, 3, 23, 2, 1) + absl::Microseconds(812779)},
      {"2022-08-02T15:21:06Z", Utc(2022, 8, 2, 15, 21, 6)},
      {"2022-08-02T15:21:06.5",
       Utc(2022, 8, 2, 15, 21, 6) + absl::Milliseconds(500)},
      {"2022-08-02T15:21:06.123456789Z",
       Utc(2022, 8, 2, 15, 21, 6) + absl::Nanoseconds(123456789)},
      {"2022-08-02T15:21:06-05:30", Utc(2022, 8, 2, 20, 51, 6)},
      {"2022-08-02T15:21:06+00:00", Utc(2022, 8, 2, 15, 21, 6)},
      {"2022-08-02t15:21:06z", Utc(2022, 8, 2, 15, 21, 6)},
      {"2024-02-29T23:59:59", Utc(2024, 2, 29, 23, 59, 59)},
      {"2000-02-29T00:00:00", Utc(2000, 2, 29, 0, 0, 0)},
      {"1970-01-01T00:00:00", absl::UnixEpoch()},
      {"1969-12-31T23:59:59.25", absl::UnixEpoch() - absl::Milliseconds(750)},
      {"2022-12-31T23:30:00-01:00", Utc(2023, 1, 1, 0, 30, 0)},
  };
  for (const Case& c : cases) {
    absl::StatusOr<absl::Time> t = ParsePublishedAt(c.text);
    ASSERT_TRUE(t.ok()) << c.text << ": " << t.status();
    EXPECT_EQ(*t, c.expected) << c.text;
  }
}

TEST(ParsePublishedAtTest, RejectsMalformed) {
  struct Case {
    const char* text;
    const char* why;
  };
  const Case cases[] = {
      {"", "expected YYYY-MM-DDTHH:MM:SS"},
      {"2022-08-02", "expected YYYY-MM-DDTHH:MM:SS"},
      {"2022-08-02 15:21:06", "expected YYYY-MM-DDTHH:MM:SS"},
      {"2022-8-2T15:21:06Z", "expected YYYY-MM-DDTHH:MM:SS"},
      {"x022-08-02T15:21:06", "expected YYYY-MM-DDTHH:MM:SS"},
      {"2022-13-02T00:00:00", "month out of range"},
      {"2022-00-02T00:00:00", "month out of range"},
      {"2023-02-29T00:00:00", "day out of range"},
      {"1900-02-29T00:00:00", "day out of range"},
      {"2022-04-31T00:00:00", "day out of range"},
      {"2022-08-00T00:00:00", "day out of range"},
      {"2022-08-02T24:00:00", "hour out of range"},
      {"2022-08-02T15:60:00", "minute out of range"},
      {"2022-08-02T15:21:60", "second out of range"},
      {"2022-08-02T15:21:06.", "no digits after '.'"},
      {"2022-08-02T15:21:06.1234567890", "more than 9 fractional digits"},
      {"2022-08-02T15:21:06+0100", "expected a zone offset of the form +HH:MM"},
      {"2022-08-02T15:21:06+01", "expected a zone offset of the form +HH:MM"},
      {"2022-08-02T15:21:06+24:00", "zone offset out of range"},
      {"2022-08-02T15:21:06+01:60", "zone offset out of range"},
      {"2022-08-02T15:21:06Zjunk", "unexpected characters at offset 20"},
      {"2022-08-02T15:21:06 ", "unexpected characters at offset 19"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ParsePublishedAt(c.text),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.why)))
        << c.text;
  }
}

TEST(CompanyNumberFromUriTest, AllUriShapes) {
  EXPECT_EQ(CompanyNumberFromUri("/company/SC571653"), "SC571653");
  EXPECT_EQ(CompanyNumberFromUri("/company/02154654/filing-history/Mz"),
            "02154654");
  EXPECT_EQ(
      CompanyNumberFromUri(
          "/company/14271677/persons-with-significant-control/individual/OL"),
      "14271677");
  EXPECT_EQ(CompanyNumberFromUri("company/00000004/exemptions"), "00000004");
  EXPECT_EQ(CompanyNumberFromUri("/company/oe003609/x"), "oe003609");
  EXPECT_EQ(CompanyNumberFromUri("/disqualified-officers/natural/abc"), "");
  EXPECT_EQ(CompanyNumberFromUri("/disqualified-officers/corporate/abc"), "");
  EXPECT_EQ(CompanyNumberFromUri("/company/"), "");
  EXPECT_EQ(CompanyNumberFromUri("/companies/123"), "");
  EXPECT_EQ(CompanyNumberFromUri(""), "");
}

}  // namespace
}  // namespace chstream::ingest
