#include "base/json.h"

#include "absl/strings/str_format.h"
#include "base/utf8.h"

namespace chstream {

void AppendJsonString(std::string* out, std::string_view s,
                      bool go_html_escape) {
  out->push_back('"');
  // Characters that need no escape are copied a run at a time.
  size_t run = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      // Multi-byte characters are copied; invalid bytes become U+FFFD.
      const size_t n = Utf8SequenceLength(s.substr(i));
      if (n > 0) {
        i += n - 1;
        continue;
      }
      out->append(s.data() + run, i - run);
      out->append(kUtf8Replacement);
      const size_t bad = i + Utf8InvalidPrefixLength(s.substr(i));
      run = bad;
      i = bad - 1;
      continue;
    }
    const bool html = c == '<' || c == '>' || c == '&';
    if (c >= 0x20 && c != '"' && c != '\\' && !(html && go_html_escape)) {
      continue;
    }
    out->append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:  // other control characters; <, >, & when go_html_escape
        absl::StrAppendFormat(out, "\\u%04x", c);
    }
  }
  out->append(s.data() + run, s.size() - run);
  out->push_back('"');
}

std::string JsonString(std::string_view s) {
  std::string out;
  AppendJsonString(&out, s);
  return out;
}

std::string FormatRfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone());
}

}  // namespace chstream
