#include "base/utf8.h"

#include <string>

#include "gtest/gtest.h"

namespace chstream {
namespace {

const std::string kEuro = "\xE2\x82\xAC";      // U+20AC, 3 bytes
const std::string kGrin = "\xF0\x9F\x98\x80";  // U+1F600, 4 bytes
const std::string kE = "\xC3\xA9";             // U+00E9, 2 bytes
const std::string kFffd = "\xEF\xBF\xBD";

TEST(Utf8Test, ValidText) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ASCII"));
  EXPECT_TRUE(IsValidUtf8("caf" + kE + " " + kEuro + kGrin));
  EXPECT_TRUE(IsValidUtf8("\xF4\x8F\xBF\xBF"));  // U+10FFFF
}

TEST(Utf8Test, InvalidText) {
  EXPECT_FALSE(IsValidUtf8("\xC3"));              // truncated
  EXPECT_FALSE(IsValidUtf8("\xC3\x28"));          // bad continuation
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xE0\x80\xAF"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // surrogate U+D800
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xFF"));
  EXPECT_FALSE(IsValidUtf8("\x80"));
  EXPECT_FALSE(IsValidUtf8(kEuro.substr(0, 2)));
}

TEST(Utf8Test, SanitizeReplacesEachMaximalInvalidSubpart) {
  EXPECT_EQ(SanitizeUtf8("ok " + kEuro), "ok " + kEuro);
  EXPECT_EQ(SanitizeUtf8("a\xFF"
                         "b"),
            "a" + kFffd + "b");
  // A truncated 3-byte sequence is one replacement, not two.
  EXPECT_EQ(SanitizeUtf8("a" + kEuro.substr(0, 2) + "b"), "a" + kFffd + "b");
  EXPECT_EQ(SanitizeUtf8("\xC3\x28"), kFffd + "(");
  EXPECT_EQ(SanitizeUtf8("\xED\xA0\x80"), kFffd + kFffd + kFffd);
  EXPECT_EQ(SanitizeUtf8(kGrin.substr(0, 3)), kFffd);
  EXPECT_EQ(SanitizeUtf8(std::string("\0x", 2)), std::string("\0x", 2));
  for (const std::string s : {"\xC3", "\xF0\x9F", "\x80\x80", "\xFE\xFF"}) {
    EXPECT_TRUE(IsValidUtf8(SanitizeUtf8(s))) << s;
  }
}

TEST(Utf8Test, TruncateNeverSplitsACharacter) {
  const std::string text = "ab" + kEuro + kGrin + kE;  // 2 + 3 + 4 + 2 bytes
  EXPECT_EQ(TruncateUtf8(text, 100), text);
  EXPECT_EQ(TruncateUtf8(text, 2), "ab");
  EXPECT_EQ(TruncateUtf8(text, 3), "ab");
  EXPECT_EQ(TruncateUtf8(text, 4), "ab");
  EXPECT_EQ(TruncateUtf8(text, 5), "ab" + kEuro);
  EXPECT_EQ(TruncateUtf8(text, 6), "ab" + kEuro);
  EXPECT_EQ(TruncateUtf8(text, 8), "ab" + kEuro);
  EXPECT_EQ(TruncateUtf8(text, 9), "ab" + kEuro + kGrin);
  EXPECT_EQ(TruncateUtf8(text, 10), "ab" + kEuro + kGrin);
  EXPECT_EQ(TruncateUtf8(text, 0), "");
  // Every cut of valid text is valid.
  for (size_t n = 0; n <= text.size(); ++n) {
    EXPECT_TRUE(IsValidUtf8(TruncateUtf8(text, n))) << n;
  }
  // Invalid bytes are cut as bytes (SanitizeUtf8 deals with them).
  EXPECT_EQ(TruncateUtf8("a\x80\x80\x80\x80", 3), "a\x80\x80");
}

}  // namespace
}  // namespace chstream
