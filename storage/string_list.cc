#include "storage/string_list.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "base/json.h"

namespace chstream::storage {
namespace {

constexpr char kCompaniesStream[] = "companies";
constexpr char kCompanyProfileKind[] = "company-profile";

// Debian's abseil has its own string_view type, which StrCat needs.
absl::string_view Av(std::string_view s) { return {s.data(), s.size()}; }

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool ParseHex4(std::string_view in, size_t i, uint32_t* value) {
  if (i + 4 > in.size()) return false;
  uint32_t v = 0;
  for (size_t k = i; k < i + 4; ++k) {
    char c = in[k];
    v <<= 4;
    if (c >= '0' && c <= '9') {
      v |= c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v |= c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      v |= c - 'A' + 10;
    } else {
      return false;
    }
  }
  *value = v;
  return true;
}

}  // namespace

std::string EncodeStringList(const std::vector<std::string>& list) {
  std::string out = "[";
  for (size_t i = 0; i < list.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendJsonString(&out, list[i]);
  }
  out.push_back(']');
  return out;
}

// Decodes a JSON array of strings (any valid JSON escapes; other bytes are
// copied as they are). Returns false on malformed input.
bool DecodeStringList(std::string_view in, std::vector<std::string>* out) {
  out->clear();
  size_t i = 0;
  auto skip_ws = [&] {
    while (i < in.size() &&
           (in[i] == ' ' || in[i] == '\n' || in[i] == '\r' || in[i] == '\t')) {
      ++i;
    }
  };
  skip_ws();
  if (i >= in.size() || in[i] != '[') return false;
  ++i;
  skip_ws();
  if (i < in.size() && in[i] == ']') {
    ++i;
    skip_ws();
    return i == in.size();
  }
  while (true) {
    skip_ws();
    if (i >= in.size() || in[i] != '"') return false;
    ++i;
    std::string& s = out->emplace_back();
    while (true) {
      if (i >= in.size()) return false;
      char c = in[i++];
      if (c == '"') break;
      if (c != '\\') {
        s.push_back(c);
        continue;
      }
      if (i >= in.size()) return false;
      char e = in[i++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          s.push_back(e);
          break;
        case 'b':
          s.push_back('\b');
          break;
        case 'f':
          s.push_back('\f');
          break;
        case 'n':
          s.push_back('\n');
          break;
        case 'r':
          s.push_back('\r');
          break;
        case 't':
          s.push_back('\t');
          break;
        case 'u': {
          uint32_t cp;
          if (!ParseHex4(in, i, &cp)) return false;
          i += 4;
          if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 <= in.size() &&
              in[i] == '\\' && in[i + 1] == 'u') {
            uint32_t low;
            if (ParseHex4(in, i + 2, &low) && low >= 0xDC00 && low <= 0xDFFF) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
              i += 6;
            }
          }
          AppendUtf8(cp, &s);
          break;
        }
        default:
          return false;
      }
    }
    skip_ws();
    if (i >= in.size()) return false;
    if (in[i] == ',') {
      ++i;
      continue;
    }
    if (in[i] != ']') return false;
    ++i;
    skip_ws();
    return i == in.size();
  }
}

absl::Status DecodeListColumn(std::string_view text, std::string_view what,
                              std::vector<std::string>* out) {
  if (!DecodeStringList(text, out)) {
    return absl::DataLossError(absl::StrCat("malformed JSON string list in ",
                                            Av(what), ": ",
                                            Av(text.substr(0, 80))));
  }
  return absl::OkStatus();
}

bool IsCompanyEvent(const Event& e) {
  return e.stream == kCompaniesStream &&
         e.resource_kind == kCompanyProfileKind && !e.company_number.empty();
}

}  // namespace chstream::storage
