#include "ingest/event_parser.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <span>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "base/json.h"
#include "base/utf8.h"

namespace chstream::ingest {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

constexpr size_t kMaxQuotedValueBytes = 64;

// Debian's abseil has its own string_view type (not std::string_view).
absl::string_view Absl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

std::string_view TrimAsciiWhitespace(std::string_view s) {
  const absl::string_view trimmed = absl::StripAsciiWhitespace(Absl(s));
  return std::string_view(trimmed.data(), trimmed.size());
}
constexpr int kMaxJsonDepth = 1024;  // simdjson's default
// Deeper `data` is dead-lettered: as a google.protobuf.Struct each JSON level
// costs two message levels (Struct -> Value), and protobuf parsers stop at
// 100, so a deeper event could not be read by C++, Java or Python clients.
constexpr int kMaxDataDepth = 32;

// `s` as a JSON string literal, shortened for use in a reason.
std::string Quote(std::string_view s) {
  if (s.size() <= kMaxQuotedValueBytes) return JsonString(s);
  // Cut at a character boundary: reasons are logged and stored as text.
  return absl::StrCat(JsonString(TruncateUtf8(s, kMaxQuotedValueBytes)), "...");
}

const char* TypeName(element value) {
  switch (value.type()) {
    case element_type::OBJECT:
      return "object";
    case element_type::ARRAY:
      return "array";
    case element_type::STRING:
      return "string";
    case element_type::INT64:
    case element_type::UINT64:
      return "integer";
    case element_type::DOUBLE:
      return "number";
    case element_type::BOOL:
      return "boolean";
    case element_type::NULL_VALUE:
      return "null";
  }
  return "unknown";
}

bool IsJsonSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// ---------------------------------------------------------------------------
// Locating a syntax error (failure path only). simdjson reports what is wrong
// but not where; this small recursive-descent checker finds the first bad
// byte so that dead letters say "invalid JSON at byte N: ...".

struct SyntaxError {
  size_t offset;
  std::string message;
};

class SyntaxChecker {
 public:
  explicit SyntaxChecker(std::string_view text) : s_(text) {}

  std::optional<SyntaxError> Check() {
    SkipSpace();
    if (i_ == s_.size()) return Fail("empty document");
    if (!Value(0)) return std::move(error_);
    SkipSpace();
    if (i_ != s_.size()) return Fail("unexpected content after the JSON value");
    return std::nullopt;
  }

 private:
  std::optional<SyntaxError> Fail(std::string message) {
    error_ = SyntaxError{i_, std::move(message)};
    return error_;
  }
  bool Error(std::string message) {
    Fail(std::move(message));
    return false;
  }
  bool AtEnd() const { return i_ >= s_.size(); }
  void SkipSpace() {
    while (!AtEnd() && IsJsonSpace(s_[i_])) ++i_;
  }
  std::string Describe() const {
    if (AtEnd()) return "end of input";
    const unsigned char c = static_cast<unsigned char>(s_[i_]);
    if (c >= 0x20 && c < 0x7F) {
      return absl::StrCat("'", Absl(s_.substr(i_, 1)), "'");
    }
    return absl::StrCat("byte 0x", absl::Hex(c, absl::kZeroPad2));
  }

  bool Value(int depth) {
    if (AtEnd()) return Error("unexpected end of input, expected a value");
    switch (s_[i_]) {
      case '{':
        return Object(depth + 1);
      case '[':
        return Array(depth + 1);
      case '"':
        return String();
      case 't':
        return Literal("true");
      case 'f':
        return Literal("false");
      case 'n':
        return Literal("null");
      default:
        if (s_[i_] == '-' || IsDigit(s_[i_])) return Number();
        return Error(
            absl::StrCat("unexpected ", Describe(), ", expected a value"));
    }
  }

  bool Object(int depth) {
    if (depth > kMaxJsonDepth) return Error("nesting too deep");
    ++i_;  // '{'
    SkipSpace();
    if (!AtEnd() && s_[i_] == '}') {
      ++i_;
      return true;
    }
    while (true) {
      if (AtEnd() || s_[i_] != '"') {
        return Error(absl::StrCat("expected '\"' to start an object key, got ",
                                  Describe()));
      }
      if (!String()) return false;
      SkipSpace();
      if (AtEnd() || s_[i_] != ':') {
        return Error(
            absl::StrCat("expected ':' after object key, got ", Describe()));
      }
      ++i_;
      SkipSpace();
      if (!Value(depth)) return false;
      SkipSpace();
      if (!AtEnd() && s_[i_] == ',') {
        ++i_;
        SkipSpace();
        continue;
      }
      if (!AtEnd() && s_[i_] == '}') {
        ++i_;
        return true;
      }
      return Error(
          absl::StrCat("expected ',' or '}' in object, got ", Describe()));
    }
  }

  bool Array(int depth) {
    if (depth > kMaxJsonDepth) return Error("nesting too deep");
    ++i_;  // '['
    SkipSpace();
    if (!AtEnd() && s_[i_] == ']') {
      ++i_;
      return true;
    }
    while (true) {
      if (!Value(depth)) return false;
      SkipSpace();
      if (!AtEnd() && s_[i_] == ',') {
        ++i_;
        SkipSpace();
        continue;
      }
      if (!AtEnd() && s_[i_] == ']') {
        ++i_;
        return true;
      }
      return Error(
          absl::StrCat("expected ',' or ']' in array, got ", Describe()));
    }
  }

  static bool IsDigit(char c) { return c >= '0' && c <= '9'; }
  static int HexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // Reads "XXXX" after "\u" at i_; returns the code unit or -1.
  int Hex4() {
    if (s_.size() - i_ < 4) return -1;
    int v = 0;
    for (int k = 0; k < 4; ++k) {
      const int h = HexValue(s_[i_ + k]);
      if (h < 0) return -1;
      v = v * 16 + h;
    }
    i_ += 4;
    return v;
  }

  bool String() {
    const size_t start = i_;
    ++i_;  // '"'
    while (true) {
      if (AtEnd()) {
        i_ = start;
        return Error("unterminated string");
      }
      const unsigned char c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c == '\\') {
        ++i_;
        if (AtEnd()) continue;  // reported as unterminated
        const char e = s_[i_];
        if (e == 'u') {
          const size_t escape = i_ - 1;
          ++i_;
          const int unit = Hex4();
          if (unit < 0) {
            i_ = escape;
            return Error("invalid \\u escape (needs 4 hex digits)");
          }
          if (unit >= 0xDC00 && unit <= 0xDFFF) {
            i_ = escape;
            return Error("invalid \\u escape: unpaired low surrogate");
          }
          if (unit >= 0xD800 && unit <= 0xDBFF) {
            int low = -1;
            if (s_.size() - i_ >= 2 && s_[i_] == '\\' && s_[i_ + 1] == 'u') {
              i_ += 2;
              low = Hex4();
            }
            if (low < 0xDC00 || low > 0xDFFF) {
              i_ = escape;
              return Error("invalid \\u escape: unpaired high surrogate");
            }
          }
          continue;
        }
        if (std::strchr("\"\\/bfnrt", e) == nullptr || e == '\0') {
          --i_;
          return Error(
              absl::StrCat("invalid escape sequence \\", std::string(1, e)));
        }
        ++i_;
        continue;
      }
      if (c < 0x20) return Error("unescaped control character in string");
      if (c < 0x80) {
        ++i_;
        continue;
      }
      if (!Utf8Sequence()) return Error("invalid UTF-8");
    }
  }

  // Validates one multi-byte UTF-8 sequence at i_ and steps over it.
  bool Utf8Sequence() {
    const size_t n = Utf8SequenceLength(s_.substr(i_));
    if (n == 0) return false;
    i_ += n;
    return true;
  }

  bool Number() {
    const size_t start = i_;
    if (s_[i_] == '-') ++i_;
    if (AtEnd() || !IsDigit(s_[i_])) {
      i_ = start;
      return Error("invalid number");
    }
    if (s_[i_] == '0') {
      ++i_;
      if (!AtEnd() && IsDigit(s_[i_])) {
        i_ = start;
        return Error("invalid number (leading zero)");
      }
    } else {
      while (!AtEnd() && IsDigit(s_[i_])) ++i_;
    }
    bool is_float = false;
    if (!AtEnd() && s_[i_] == '.') {
      is_float = true;
      ++i_;
      if (AtEnd() || !IsDigit(s_[i_])) {
        i_ = start;
        return Error("invalid number (no digit after '.')");
      }
      while (!AtEnd() && IsDigit(s_[i_])) ++i_;
    }
    if (!AtEnd() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      is_float = true;
      ++i_;
      if (!AtEnd() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (AtEnd() || !IsDigit(s_[i_])) {
        i_ = start;
        return Error("invalid number (no digit in exponent)");
      }
      while (!AtEnd() && IsDigit(s_[i_])) ++i_;
    }
    if (is_float) {
      const std::string literal(s_.substr(start, i_ - start));
      if (std::isinf(std::strtod(literal.c_str(), nullptr))) {
        i_ = start;
        return Error("number out of range");
      }
    }
    return true;
  }

  bool Literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) {
      return Error(absl::StrCat("invalid literal, expected ", Absl(word)));
    }
    i_ += word.size();
    return true;
  }

  std::string_view s_;
  size_t i_ = 0;
  std::optional<SyntaxError> error_;
};

std::string InvalidJsonReason(std::string_view line,
                              simdjson::error_code error) {
  if (std::optional<SyntaxError> found = SyntaxChecker(line).Check()) {
    return absl::StrCat("invalid JSON at byte ", found->offset, ": ",
                        found->message);
  }
  return absl::StrCat("invalid JSON: ", simdjson::error_message(error));
}

// ---------------------------------------------------------------------------
// Finding the raw bytes of a top-level member's value in JSON text that
// simdjson has already accepted (so only the happy path is handled, with
// bounds checks against malformed input for safety).

// `i` is at an opening '"'; returns the index just past the closing '"'.
size_t SkipString(std::string_view s, size_t i) {
  ++i;
  while (i < s.size()) {
    const void* found = std::memchr(s.data() + i, '"', s.size() - i);
    if (found == nullptr) return s.size();
    const size_t quote = static_cast<const char*>(found) - s.data();
    size_t backslashes = 0;
    while (quote - backslashes > i && s[quote - backslashes - 1] == '\\') {
      ++backslashes;
    }
    i = quote + 1;
    if (backslashes % 2 == 0) return i;
  }
  return s.size();
}

size_t SkipSpaces(std::string_view s, size_t i) {
  while (i < s.size() && IsJsonSpace(s[i])) ++i;
  return i;
}

// `i` is at the first byte of a value; returns the index just past it.
size_t SkipValue(std::string_view s, size_t i) {
  if (i >= s.size()) return s.size();
  const char first = s[i];
  if (first == '"') return SkipString(s, i);
  if (first != '{' && first != '[') {
    while (i < s.size() && !IsJsonSpace(s[i]) && s[i] != ',' && s[i] != '}' &&
           s[i] != ']') {
      ++i;
    }
    return i;
  }
  int depth = 0;
  while (i < s.size()) {
    switch (s[i]) {
      case '"':
        i = SkipString(s, i);
        continue;
      case '{':
      case '[':
        ++depth;
        break;
      case '}':
      case ']':
        if (--depth == 0) return i + 1;
        break;
      default:
        break;
    }
    ++i;
  }
  return s.size();
}

// The text of the value of the `index`-th (0-based) member of the top-level
// object in `json`.
std::string_view TopLevelMemberValue(std::string_view json, size_t index) {
  size_t i = SkipSpaces(json, 0) + 1;  // past '{'
  for (size_t k = 0;; ++k) {
    i = SkipSpaces(json, i);
    i = SkipString(json, i);      // the key
    i = SkipSpaces(json, i) + 1;  // past ':'
    i = SkipSpaces(json, i);
    const size_t start = i;
    i = SkipValue(json, i);
    if (start >= json.size()) return {};
    if (k == index) return json.substr(start, i - start);
    i = SkipSpaces(json, i) + 1;  // past ','
  }
}

// ---------------------------------------------------------------------------

// Reads event.timepoint: a non-negative integer that fits int64, or a string
// of 1-19 digits. Returns the reason on failure.
std::variant<int64_t, std::string> ReadTimepoint(element value) {
  switch (value.type()) {
    case element_type::INT64: {
      const int64_t v = value.get_int64().value_unsafe();
      if (v < 0) {
        return absl::StrCat("event.timepoint must not be negative, got ", v);
      }
      return v;
    }
    case element_type::UINT64:
      return absl::StrCat("event.timepoint out of range, got ",
                          value.get_uint64().value_unsafe());
    case element_type::DOUBLE: {
      const double d = value.get_double().value_unsafe();
      if (std::nearbyint(d) == d && std::fabs(d) >= 9223372036854775808.0) {
        return absl::StrCat("event.timepoint out of range, got ", d);
      }
      return absl::StrCat("event.timepoint must be an integer, got ", d);
    }
    case element_type::STRING: {
      const std::string_view s = value.get_string().value_unsafe();
      if (s.empty() ||
          s.find_first_not_of("0123456789") != std::string_view::npos) {
        return absl::StrCat(
            "event.timepoint must be an integer or a string of digits, got ",
            Quote(s));
      }
      std::string_view digits =
          s.substr(std::min(s.find_first_not_of('0'), s.size() - 1));
      constexpr std::string_view kMax = "9223372036854775807";
      if (digits.size() > kMax.size() ||
          (digits.size() == kMax.size() && digits > kMax)) {
        return absl::StrCat("event.timepoint out of range, got ", Quote(s));
      }
      int64_t v = 0;
      for (char c : digits) v = v * 10 + (c - '0');  // <= INT64_MAX
      return v;
    }
    default:
      return absl::StrCat("event.timepoint must be an integer, got ",
                          TypeName(value));
  }
}

std::string NormaliseCompanyNumber(std::string_view raw) {
  return absl::AsciiStrToUpper(Absl(TrimAsciiWhitespace(raw)));
}

// The first member of `obj` with each of the N names (as obj[name] finds
// it), in one pass over `obj` instead of one per name.
template <size_t N>
std::array<std::optional<element>, N> FindMembers(
    object obj, const std::array<std::string_view, N>& names) {
  std::array<std::optional<element>, N> found;
  for (const auto field : obj) {
    for (size_t i = 0; i < N; ++i) {
      if (!found[i].has_value() && field.key == names[i]) {
        found[i] = field.value;
        break;
      }
    }
  }
  return found;
}

// Reads string members into `dests`, in order: dests[i] from found[i]
// (FindMembers' result for `names`; missing or null members leave it
// empty). `path` prefixes the name in the reason returned for a member of
// another type.
std::optional<std::string> ReadOptionalStrings(
    std::span<const std::optional<element>> found,
    std::span<const std::string_view> names,
    std::initializer_list<std::string*> dests, std::string_view path) {
  size_t i = 0;
  for (std::string* dest : dests) {
    const std::optional<element>& value = found[i];
    const std::string_view name = names[i++];
    if (!value.has_value() || value->is_null()) continue;
    std::string_view s;
    if (value->get_string().get(s)) {
      return absl::StrCat(Absl(path), Absl(name), " must be a string, got ",
                          TypeName(*value));
    }
    dest->assign(s);
  }
  return std::nullopt;
}

// The typed company-profile fields (upstream-api.md §6.3). Missing or null
// fields stay empty; a field of another type is a reason to reject the line
// (it would otherwise be stored as empty, silently): returns the reason.
// Fields are checked in the order listed here, whatever their order in the
// line.
std::optional<std::string> ReadCompanyFields(object data,
                                             storage::CompanyFields& company) {
  static constexpr std::array<std::string_view, 8> kNames = {
      "company_name",
      "company_status",
      "type",
      "jurisdiction",
      "date_of_creation",
      "date_of_cessation",
      "registered_office_address",
      "sic_codes"};
  const auto found = FindMembers(data, kNames);
  if (auto e = ReadOptionalStrings(
          found, kNames,
          {&company.company_name, &company.company_status,
           &company.company_type, &company.jurisdiction,
           &company.date_of_creation, &company.date_of_cessation},
          "data.")) {
    return e;
  }
  if (const std::optional<element>& value = found[6];
      value.has_value() && !value->is_null()) {
    object address;
    if (value->get_object().get(address)) {
      return absl::StrCat(
          "data.registered_office_address must be an object, got ",
          TypeName(*value));
    }
    static constexpr std::array<std::string_view, 9> kAddressNames = {
        "premises",    "address_line_1", "address_line_2", "locality", "region",
        "postal_code", "country",        "care_of",        "po_box"};
    storage::Address& a = company.registered_office_address;
    if (auto e = ReadOptionalStrings(
            FindMembers(address, kAddressNames), kAddressNames,
            {&a.premises, &a.address_line_1, &a.address_line_2, &a.locality,
             &a.region, &a.postal_code, &a.country, &a.care_of, &a.po_box},
            "data.registered_office_address.")) {
      return e;
    }
  }
  if (const std::optional<element>& value = found[7];
      value.has_value() && !value->is_null()) {
    array sic_codes;
    if (value->get_array().get(sic_codes)) {
      return absl::StrCat("data.sic_codes must be an array of strings, got ",
                          TypeName(*value));
    }
    size_t k = 0;
    for (element code : sic_codes) {
      std::string_view s;
      if (code.get_string().get(s)) {
        return absl::StrCat("data.sic_codes[", k, "] must be a string, got ",
                            TypeName(code));
      }
      company.sic_codes.emplace_back(s);
      ++k;
    }
  }
  return std::nullopt;
}

// True if `value` has containers nested deeper than `limit` levels (`value`
// itself, if a container, is level 1). Recurses at most limit + 1 deep.
bool NestedDeeperThan(element value, int limit) {
  object obj;
  array arr;
  if (!value.get_object().get(obj)) {
    if (limit == 0) return true;
    for (const auto field : obj) {
      if (NestedDeeperThan(field.value, limit - 1)) return true;
    }
  } else if (!value.get_array().get(arr)) {
    if (limit == 0) return true;
    for (element item : arr) {
      if (NestedDeeperThan(item, limit - 1)) return true;
    }
  }
  return false;
}

// A member of an object seen while scanning for known keys.
struct Member {
  std::optional<element> value;
  size_t index = 0;  // position among the object's members
};

// Records `value` under `member`; notes a repeated key in *duplicate.
void Collect(Member& member, std::string_view key, element value, size_t index,
             std::string_view path, std::string* duplicate) {
  if (member.value.has_value()) {
    if (duplicate->empty()) {
      *duplicate = absl::StrCat("duplicate key ",
                                Quote(absl::StrCat(Absl(path), Absl(key))));
    }
    return;
  }
  member.value = value;
  member.index = index;
}

int DaysInMonth(int64_t year, int month) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30,
                                  31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month == 2 && leap ? 29 : kDays[month - 1];
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
// days_from_civil).
int64_t DaysFromCivil(int64_t y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

}  // namespace

// ---------------------------------------------------------------------------

absl::StatusOr<absl::Time> ParsePublishedAt(std::string_view text) {
  const auto fail = [text](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(Quote(text), ": ", Absl(why)));
  };
  // Reads `count` digits at `pos`, or returns -1.
  const auto digits = [text](size_t pos, size_t count) -> int64_t {
    if (pos + count > text.size()) return -1;
    int64_t v = 0;
    for (size_t k = pos; k < pos + count; ++k) {
      if (text[k] < '0' || text[k] > '9') return -1;
      v = v * 10 + (text[k] - '0');
    }
    return v;
  };
  const auto at = [text](size_t pos, char c) {
    return pos < text.size() && text[pos] == c;
  };

  if (text.size() < 19) return fail("expected YYYY-MM-DDTHH:MM:SS");
  const int64_t year = digits(0, 4);
  const int64_t month = digits(5, 2);
  const int64_t day = digits(8, 2);
  const int64_t hour = digits(11, 2);
  const int64_t minute = digits(14, 2);
  const int64_t second = digits(17, 2);
  if (year < 0 || month < 0 || day < 0 || hour < 0 || minute < 0 ||
      second < 0 || !at(4, '-') || !at(7, '-') ||
      !(at(10, 'T') || at(10, 't')) || !at(13, ':') || !at(16, ':')) {
    return fail("expected YYYY-MM-DDTHH:MM:SS");
  }
  if (month < 1 || month > 12) return fail("month out of range");
  if (day < 1 || day > DaysInMonth(year, static_cast<int>(month))) {
    return fail("day out of range");
  }
  if (hour > 23) return fail("hour out of range");
  if (minute > 59) return fail("minute out of range");
  if (second > 59) return fail("second out of range");

  size_t pos = 19;
  int64_t nanos = 0;
  if (at(pos, '.')) {
    ++pos;
    size_t count = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (++count > 9) return fail("more than 9 fractional digits");
      nanos = nanos * 10 + (text[pos] - '0');
      ++pos;
    }
    if (count == 0) return fail("no digits after '.'");
    for (size_t k = count; k < 9; ++k) nanos *= 10;
  }
  int64_t offset_seconds = 0;
  if (at(pos, 'Z') || at(pos, 'z')) {
    ++pos;
  } else if (at(pos, '+') || at(pos, '-')) {
    const int64_t oh = digits(pos + 1, 2);
    const int64_t om = digits(pos + 4, 2);
    if (oh < 0 || om < 0 || !at(pos + 3, ':')) {
      return fail("expected a zone offset of the form +HH:MM");
    }
    if (oh > 23 || om > 59) return fail("zone offset out of range");
    offset_seconds = (oh * 3600 + om * 60) * (text[pos] == '-' ? -1 : 1);
    pos += 6;
  }
  if (pos != text.size()) {
    return fail(absl::StrCat("unexpected characters at offset ", pos));
  }
  const int64_t seconds =
      DaysFromCivil(year, static_cast<int>(month), static_cast<int>(day)) *
          86400 +
      hour * 3600 + minute * 60 + second - offset_seconds;
  return absl::FromUnixSeconds(seconds) + absl::Nanoseconds(nanos);
}

std::string CompanyNumberFromUri(std::string_view resource_uri) {
  std::string_view rest = resource_uri;
  if (!rest.empty() && rest.front() == '/') rest.remove_prefix(1);
  constexpr std::string_view kPrefix = "company/";
  if (rest.substr(0, kPrefix.size()) != kPrefix) return "";
  rest.remove_prefix(kPrefix.size());
  return std::string(rest.substr(0, rest.find('/')));
}

EventParser::EventParser() {
  CopyToPadded(std::string_view());
  // The envelope is depth 1 and data depth 2, so a document no deeper than
  // kMaxDataDepth + 1 has data no deeper than kMaxDataDepth
  // (DataDeeperThan32LevelsIsRejected checks the boundary). parse() keeps
  // the depth when it grows the capacity.
  // Should this fail (no memory), parse() allocates with the default depth,
  // and ParsePadded sees that in max_depth().
  [[maybe_unused]] const simdjson::error_code allocated =
      parser_.allocate(padded_capacity_, kMaxDataDepth + 1);
}

simdjson::error_code EventParser::ParsePadded(size_t size, element* root,
                                              bool* depth_checked) {
  simdjson::error_code error =
      parser_.parse(padded_.get(), size, false).get(*root);
  if (error != simdjson::DEPTH_ERROR) {
    *depth_checked = parser_.max_depth() <= kMaxDataDepth + 1;
    return error;
  }
  *depth_checked = false;
  if (deep_parser_ == nullptr) {
    deep_parser_ = std::make_unique<simdjson::dom::parser>();
  }
  return deep_parser_->parse(padded_.get(), size, false).get(*root);
}

void EventParser::CopyToPadded(std::string_view text) {
  if (padded_ == nullptr || text.size() > padded_capacity_) {
    padded_capacity_ = std::max<size_t>(text.size(), 4096);
    padded_ =
        std::make_unique<char[]>(padded_capacity_ + simdjson::SIMDJSON_PADDING);
  }
  if (!text.empty()) std::memcpy(padded_.get(), text.data(), text.size());
  std::memset(padded_.get() + text.size(), 0, simdjson::SIMDJSON_PADDING);
}

std::variant<storage::Event, ParseError> EventParser::Parse(
    std::string_view stream, std::string_view line, absl::Time received_at) {
  std::optional<int64_t> timepoint;
  const auto fail = [&timepoint](std::string reason) {
    return ParseError{std::move(reason), timepoint};
  };

  // 1. JSON.
  CopyToPadded(line);
  element root;
  bool depth_checked = false;
  simdjson::error_code error = ParsePadded(line.size(), &root, &depth_checked);
  if (error == simdjson::NUMBER_ERROR) {
    if (std::optional<std::string> widened = WidenOversizedIntegers(line)) {
      CopyToPadded(*widened);
      error = ParsePadded(widened->size(), &root, &depth_checked);
    }
  }
  if (error) return fail(InvalidJsonReason(line, error));
  object envelope;
  if (root.get_object().get(envelope)) {
    return fail(
        absl::StrCat("line is not a JSON object, got ", TypeName(root)));
  }

  // 2. Collect the known members (first occurrence; repeats are errors).
  Member kind, uri, id, data, event;
  std::string duplicate;
  size_t index = 0;
  for (const auto field : envelope) {
    const std::string_view key = field.key;
    Member* member = key == "resource_kind"  ? &kind
                     : key == "resource_uri" ? &uri
                     : key == "resource_id"  ? &id
                     : key == "data"         ? &data
                     : key == "event"        ? &event
                                             : nullptr;
    if (member != nullptr) {
      Collect(*member, key, field.value, index, "", &duplicate);
    }
    ++index;
  }
  Member tp, published, type, fields_changed;
  object event_object;
  const bool event_is_object =
      event.value.has_value() && !event.value->get_object().get(event_object);
  if (event_is_object) {
    for (const auto field : event_object) {
      const std::string_view key = field.key;
      Member* member = key == "timepoint"        ? &tp
                       : key == "published_at"   ? &published
                       : key == "type"           ? &type
                       : key == "fields_changed" ? &fields_changed
                                                 : nullptr;
      if (member != nullptr) {
        Collect(*member, key, field.value, 0, "event.", &duplicate);
      }
    }
  }

  // 3. The timepoint first, so that every later error can carry it.
  std::string timepoint_error;
  if (tp.value.has_value()) {
    std::variant<int64_t, std::string> read = ReadTimepoint(*tp.value);
    if (auto* v = std::get_if<int64_t>(&read)) {
      timepoint = *v;
    } else {
      timepoint_error = std::move(std::get<std::string>(read));
    }
  }

  // 4. Validate in a fixed order.
  if (!duplicate.empty()) return fail(std::move(duplicate));
  storage::Event out;
  const auto read_string = [&](const Member& member, const char* name,
                               std::string* dest) -> std::optional<ParseError> {
    if (!member.value.has_value()) return fail(absl::StrCat(name, " missing"));
    std::string_view s;
    if (member.value->get_string().get(s)) {
      return fail(absl::StrCat(name, " must be a string, got ",
                               TypeName(*member.value)));
    }
    dest->assign(s);
    return std::nullopt;
  };
  if (auto e = read_string(kind, "resource_kind", &out.resource_kind))
    return *e;
  if (out.resource_kind.empty()) return fail("resource_kind is empty");
  if (auto e = read_string(uri, "resource_uri", &out.resource_uri)) return *e;
  if (auto e = read_string(id, "resource_id", &out.resource_id)) return *e;

  if (!event.value.has_value()) return fail("event missing");
  if (!event_is_object) {
    return fail(
        absl::StrCat("event must be an object, got ", TypeName(*event.value)));
  }
  if (!tp.value.has_value()) return fail("event.timepoint missing");
  if (!timepoint_error.empty()) return fail(std::move(timepoint_error));
  out.timepoint = *timepoint;

  std::string published_text;
  if (auto e = read_string(published, "event.published_at", &published_text)) {
    return *e;
  }
  absl::StatusOr<absl::Time> published_at = ParsePublishedAt(published_text);
  if (!published_at.ok()) {
    return fail(absl::StrCat("published_at not a timestamp: ",
                             published_at.status().message()));
  }
  out.published_at = *published_at;

  std::string type_text;
  if (auto e = read_string(type, "event.type", &type_text)) return *e;
  if (type_text == "changed") {
    out.type = storage::EventType::kChanged;
  } else if (type_text == "deleted") {
    out.type = storage::EventType::kDeleted;
  } else {
    return fail(absl::StrCat("event.type must be changed or deleted, got ",
                             Quote(type_text)));
  }

  if (fields_changed.value.has_value() && !fields_changed.value->is_null()) {
    array changed;
    if (fields_changed.value->get_array().get(changed)) {
      return fail(
          absl::StrCat("event.fields_changed must be an array of strings, got ",
                       TypeName(*fields_changed.value)));
    }
    size_t k = 0;
    for (element item : changed) {
      std::string_view s;
      if (item.get_string().get(s)) {
        return fail(absl::StrCat("event.fields_changed[", k,
                                 "] must be a string, got ", TypeName(item)));
      }
      out.fields_changed.emplace_back(s);
      ++k;
    }
  }

  // 5. data.
  const bool has_data = data.value.has_value() && !data.value->is_null();
  object data_object;
  if (has_data) {
    if (data.value->get_object().get(data_object)) {
      return fail(
          absl::StrCat("data must be an object, got ", TypeName(*data.value)));
    }
  } else if (out.type == storage::EventType::kChanged) {
    return fail(data.value.has_value()
                    ? "data must be an object, got null"
                    : "data missing (required for changed events)");
  }

  // 6. Per-kind checks of what chstream extracts from data, and its depth.
  if (has_data && !depth_checked) {
    if (NestedDeeperThan(*data.value, kMaxDataDepth)) {
      return fail(
          absl::StrCat("data nested deeper than ", kMaxDataDepth, " levels"));
    }
  }
  const bool is_profile = out.resource_kind == "company-profile";
  std::string_view data_company_number;
  if (has_data) {
    element value;
    if (!data_object["company_number"].get(value) && !value.is_null()) {
      if (value.get_string().get(data_company_number)) {
        return fail(absl::StrCat("data.company_number must be a string, got ",
                                 TypeName(value)));
      }
    } else if (is_profile) {
      return fail("data.company_number missing (required for company-profile)");
    }
    if (is_profile && data_company_number != out.resource_id) {
      return fail(
          absl::StrCat("data.company_number ", Quote(data_company_number),
                       " differs from resource_id ", Quote(out.resource_id)));
    }
  }

  // 7. Normalise.
  out.stream.assign(stream);
  out.received_at = received_at;
  if (!TrimAsciiWhitespace(data_company_number).empty()) {
    out.company_number = NormaliseCompanyNumber(data_company_number);
  } else {
    out.company_number =
        NormaliseCompanyNumber(CompanyNumberFromUri(out.resource_uri));
  }
  if (has_data) {
    if (is_profile) {
      if (auto reason = ReadCompanyFields(data_object, out.company.emplace())) {
        return fail(*std::move(reason));
      }
    }
    encoder_.AppendStruct(data_object, &out.data_pb);
    // The text only where the Struct is empty ({}): see storage/event.h.
    if (out.data_pb.empty()) {
      out.data_json.assign(TopLevelMemberValue(line, data.index));
    }
  }
  return out;
}

}  // namespace chstream::ingest
