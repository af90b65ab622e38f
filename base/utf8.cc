#include "base/utf8.h"

namespace chstream {

size_t Utf8InvalidPrefixLength(std::string_view s) {
  const auto byte = [s](size_t k) {
    return k < s.size() ? static_cast<unsigned char>(s[k]) : 0;
  };
  const unsigned char c = byte(0);
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 1;
  }
  if (byte(1) < lo || byte(1) > hi) return 1;
  size_t k = 2;
  while (k < len && byte(k) >= 0x80 && byte(k) <= 0xBF) ++k;
  return k;  // < len, or the sequence would have been valid
}

size_t Utf8SequenceLength(std::string_view s) {
  if (s.empty()) return 0;
  const auto byte = [s](size_t k) {
    return k < s.size() ? static_cast<unsigned char>(s[k]) : 0;
  };
  const unsigned char c = byte(0);
  if (c < 0x80) return 1;
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;  // no overlongs
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;  // <= U+10FFFF
  } else {
    return 0;
  }
  if (byte(1) < lo || byte(1) > hi) return 0;
  for (size_t k = 2; k < len; ++k) {
    if (byte(k) < 0x80 || byte(k) > 0xBF) return 0;
  }
  return len;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t n = Utf8SequenceLength(s.substr(i));
    if (n == 0) return false;
    i += n;
  }
  return true;
}

void AppendSanitizedUtf8(std::string* out, std::string_view s) {
  size_t run = 0;  // start of the valid bytes not yet copied
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t n = Utf8SequenceLength(s.substr(i));
    if (n > 0) {
      i += n;
      continue;
    }
    out->append(s.data() + run, i - run);
    out->append(kUtf8Replacement);
    i += Utf8InvalidPrefixLength(s.substr(i));
    run = i;
  }
  out->append(s.data() + run, s.size() - run);
}

std::string SanitizeUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  AppendSanitizedUtf8(&out, s);
  return out;
}

std::string_view TruncateUtf8(std::string_view s, size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  const auto is_continuation = [s](size_t k) {
    return (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80;
  };
  const size_t end = max_bytes;
  // Cutting before a non-continuation byte never splits a character.
  if (!is_continuation(end)) return s.substr(0, end);
  // Otherwise find the lead byte of the character the cut falls in (at most
  // 3 continuation bytes back) and drop that character if it is valid.
  size_t k = end;
  while (k > 0 && end - k < 3 && is_continuation(k - 1)) --k;
  if (k == 0) return s.substr(0, end);
  const size_t lead = k - 1;
  const size_t n = Utf8SequenceLength(s.substr(lead));
  if (n > 0 && lead + n > end) return s.substr(0, lead);
  return s.substr(0, end);
}

}  // namespace chstream
