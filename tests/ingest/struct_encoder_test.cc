// Checks the hand-written Struct encoding against libprotobuf itself (linked
// into this test only): our bytes must parse as a google.protobuf.Struct equal
// to what protobuf's own JSON parser makes of the same text, and for JSON
// with sorted keys they must equal protobuf's deterministic serialisation
// byte for byte.
#include "ingest/struct_encoder.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace chstream::ingest {
namespace {

using ::chstream::testing::StatusIs;
using ::google::protobuf::Struct;
using ::google::protobuf::util::MessageDifferencer;

Struct FromJson(const std::string& json) {
  Struct expected;
  const auto status =
      ::google::protobuf::util::JsonStringToMessage(json, &expected);
  EXPECT_TRUE(status.ok()) << status.ToString() << " for " << json;
  return expected;
}

std::string Deterministic(const Struct& message) {
  std::string out;
  ::google::protobuf::io::StringOutputStream stream(&out);
  ::google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  message.SerializeToCodedStream(&coded);
  coded.Trim();
  return out;
}

// Encodes `json` with our encoder and checks it against protobuf.
void ExpectEquivalent(const std::string& json, bool sorted_keys = true) {
  SCOPED_TRACE(json);
  absl::StatusOr<std::string> ours = JsonObjectToStructBytes(json);
  ASSERT_TRUE(ours.ok()) << ours.status();
  Struct parsed;
  ASSERT_TRUE(parsed.ParseFromString(*ours));
  const Struct expected = FromJson(json);
  std::string diff;
  MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&diff);
  EXPECT_TRUE(differencer.Compare(expected, parsed)) << diff;
  if (sorted_keys) {
    EXPECT_EQ(*ours, Deterministic(expected));
  }
}

TEST(StructEncoderTest, EmptyObject) {
  ExpectEquivalent("{}");
  EXPECT_EQ(*JsonObjectToStructBytes("{}"), "");
}

TEST(StructEncoderTest, ScalarsAtTopLevel) {
  ExpectEquivalent(R"({"a":null,"b":true,"c":false,"d":"","e":"text","f":0})");
}

TEST(StructEncoderTest, KnownBytesForOneString) {
  // fields { key: "a" value { string_value: "b" } }
  EXPECT_EQ(*JsonObjectToStructBytes(R"({"a":"b"})"),
            std::string("\x0A\x08\x0A\x01"
                        "a\x12\x03\x1A\x01"
                        "b",
                        10));
}

TEST(StructEncoderTest, Numbers) {
  ExpectEquivalent(
      R"({"a":0,"b":1,"c":-1,"d":127,"e":128,"f":-2147483649,)"
      R"("g":9007199254740993,"h":18446744073709551615,)"
      R"("i":-9223372036854775808,"j":0.1,"k":-2.5e-300,"l":1.7976931348623157e308,)"
      R"("m":1E2,"n":123.456e-7,"o":5e-324})");
}

TEST(StructEncoderTest, IntegersBeyond64BitsBecomeDoubles) {
  // Go writes large float64 values like this; simdjson 3.0 alone rejects
  // them.
  ExpectEquivalent(
      R"({"a":123456789012345680000,"b":-99999999999999999999,"c":[18446744073709551616]})");
}

TEST(StructEncoderTest, NestedObjectsAndArraysOfMixedTypes) {
  ExpectEquivalent(
      R"({"a":{"b":{"c":{"d":[1,"two",true,null,{"e":[]},[[],[{}]],3.5]}}},)"
      R"("f":[],"g":{},"h":[{"i":"j"},{"i":"k"}]})");
}

TEST(StructEncoderTest, UnicodeAndEscapes) {
  ExpectEquivalent(
      "{\"caf\xC3\xA9\":\"\xE2\x82\xAC \xF0\x9F\x98\x80\","
      R"("esc":"quote \" backslash \\ slash \/ \b\f\n\r\t",)"
      R"("u":"\u0026\u003c\u003e \u00e9 \ud83d\ude00 \u0000 end",)"
      R"("z\u00e9":1})");
}

TEST(StructEncoderTest, LongValuesNeedMultiByteLengths) {
  std::string big(100000, 'x');
  std::string json = "{\"a\":\"" + big + "\",\"b\":[";
  for (int i = 0; i < 2000; ++i) {
    if (i > 0) json += ",";
    json += "{\"k\":" + std::to_string(i) + "}";
  }
  json += "]}";
  ExpectEquivalent(json);
}

TEST(StructEncoderTest, EveryUpstreamSampleDataObject) {
  std::ifstream in("tests/ingest/testdata/upstream-events.ndjson");
  std::string line;
  int count = 0;
  while (std::getline(in, line)) {
    // Take data out through protobuf's own parser of the whole envelope.
    Struct envelope = FromJson(line);
    const Struct& data = envelope.fields().at("data").struct_value();
    std::string data_json;
    ASSERT_TRUE(
        ::google::protobuf::util::MessageToJsonString(data, &data_json).ok());
    absl::StatusOr<std::string> ours = JsonObjectToStructBytes(data_json);
    ASSERT_TRUE(ours.ok()) << ours.status();
    Struct parsed;
    ASSERT_TRUE(parsed.ParseFromString(*ours));
    EXPECT_TRUE(MessageDifferencer::Equals(data, parsed)) << line;
    ++count;
  }
  EXPECT_EQ(count, 7);
}

TEST(StructEncoderTest, AppendValueEncodesAValueMessage) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  ASSERT_FALSE(parser
                   .parse(simdjson::padded_string(
                       std::string_view(R"([1,"x",{"a":[true]}])")))
                   .get(root));
  std::string bytes;
  StructEncoder encoder;
  encoder.AppendValue(root, &bytes);
  ::google::protobuf::Value parsed;
  ASSERT_TRUE(parsed.ParseFromString(bytes));
  ::google::protobuf::Value expected;
  ASSERT_TRUE(::google::protobuf::util::JsonStringToMessage(
                  R"([1,"x",{"a":[true]}])", &expected)
                  .ok());
  EXPECT_TRUE(MessageDifferencer::Equals(expected, parsed));
}

TEST(StructEncoderTest, EncoderIsReusableAndAppends) {
  simdjson::dom::parser parser;
  StructEncoder encoder;
  std::string out = "prefix";
  for (const char* json : {R"({"a":[1,{"b":2}]})", R"({"c":{"d":[[]]}})"}) {
    simdjson::dom::element root;
    ASSERT_FALSE(parser.parse(simdjson::padded_string(std::string_view(json)))
                     .get(root));
    const size_t before = out.size();
    encoder.AppendStruct(root.get_object().value(), &out);
    Struct parsed;
    ASSERT_TRUE(parsed.ParseFromString(out.substr(before)));
    EXPECT_TRUE(MessageDifferencer::Equals(FromJson(json), parsed)) << json;
  }
  EXPECT_EQ(out.substr(0, 6), "prefix");
}

TEST(StructEncoderTest, RejectsNonObjectsAndInvalidJson) {
  EXPECT_THAT(JsonObjectToStructBytes("[1]"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::HasSubstr("not an object")));
  EXPECT_THAT(JsonObjectToStructBytes("{\"a\":}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::HasSubstr("invalid JSON")));
  EXPECT_THAT(JsonObjectToStructBytes("{\"a\":1e400}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::HasSubstr("invalid JSON")));
}

TEST(WidenOversizedIntegersTest, OnlyRewritesOutOfRangeIntegerLiterals) {
  EXPECT_EQ(WidenOversizedIntegers(
                R"({"a":18446744073709551615,"b":-9223372036854775808})"),
            std::nullopt);
  EXPECT_EQ(
      WidenOversizedIntegers(R"({"a":1.5e300,"b":"99999999999999999999999"})"),
      std::nullopt);
  EXPECT_EQ(
      WidenOversizedIntegers(
          R"({"a":18446744073709551616,"b":-9223372036854775809,"c\"":[123456789012345680000]})"),
      R"({"a":18446744073709551616.0,"b":-9223372036854775809.0,"c\"":[123456789012345680000.0]})");
}

}  // namespace
}  // namespace chstream::ingest
