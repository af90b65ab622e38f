#include "base/json.h"

#include <string>

#include "gtest/gtest.h"

namespace chstream {
namespace {

std::string Escaped(std::string_view s, bool html = false) {
  std::string out = "x";  // appends, never replaces
  AppendJsonString(&out, s, html);
  return out;
}

TEST(AppendJsonStringTest, CopiesPlainTextAndUtf8AsIs) {
  EXPECT_EQ(Escaped(""), "x\"\"");
  EXPECT_EQ(Escaped("ACME LTD"), "x\"ACME LTD\"");
  EXPECT_EQ(Escaped("caf\xc3\xa9 \xe2\x82\xac"),
            "x\"caf\xc3\xa9 \xe2\x82\xac\"");
}

TEST(AppendJsonStringTest, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(Escaped("a\"b\\c"), "x\"a\\\"b\\\\c\"");
  EXPECT_EQ(Escaped("\n\r\t"), "x\"\\n\\r\\t\"");
  EXPECT_EQ(Escaped(std::string("\x00\x01\x1f", 3)),
            "x\"\\u0000\\u0001\\u001f\"");
  EXPECT_EQ(Escaped("\"start and end\\"), "x\"\\\"start and end\\\\\"");
}

TEST(AppendJsonStringTest, HtmlEscapeOnlyWhenAsked) {
  EXPECT_EQ(Escaped("<a&b>"), "x\"<a&b>\"");
  EXPECT_EQ(Escaped("<a&b>", /*html=*/true), "x\"\\u003ca\\u0026b\\u003e\"");
}

// Log lines are JSON: a byte that is not UTF-8 (from an upstream error body,
// say) must not make the whole line invalid.
TEST(AppendJsonStringTest, ReplacesInvalidUtf8) {
  EXPECT_EQ(Escaped("BAD \xC3\x28\xFF LTD"),
            "x\"BAD \xEF\xBF\xBD(\xEF\xBF\xBD LTD\"");
  EXPECT_EQ(Escaped("cut \xE2\x82"), "x\"cut \xEF\xBF\xBD\"");
}

TEST(JsonStringTest, QuotesItsArgument) {
  EXPECT_EQ(JsonString("say \"hi\""), "\"say \\\"hi\\\"\"");
}

}  // namespace
}  // namespace chstream
