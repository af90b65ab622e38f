// File: base/utf8.h
//
// UTF-8 helpers for text that comes from outside (the upstream's error
// bodies and reason phrases, parts of upstream lines quoted in dead-letter
// reasons) and ends up in a log line or a protobuf `string` field. Protobuf
// requires `string` fields to be valid UTF-8: one bad byte in, say,
// StreamStatus.last_error makes C++, Java and Python clients reject the whole
// GetStatus response. Cutting text to a byte budget must therefore never
// split a character, and invalid bytes must be replaced.
//
// "Valid" is RFC 3629: no overlong forms, no surrogates (U+D800-U+DFFF), no
// code points above U+10FFFF.
//
// Thread-safety: pure functions.
//
//   std::string shown = SanitizeUtf8(TruncateUtf8(body, 4096));
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace chstream {

// U+FFFD REPLACEMENT CHARACTER, in UTF-8.
inline constexpr std::string_view kUtf8Replacement = "\xEF\xBF\xBD";

// The length (1-4) of the valid UTF-8 sequence at the start of `s`, or 0 if
// `s` is empty or does not start with one.
size_t Utf8SequenceLength(std::string_view s);

// When `s` does not start with a valid sequence: how many bytes (1-3) of it
// one U+FFFD replaces (the "maximal subpart" of the WHATWG decoder: a lead
// byte and the continuation bytes that could still have completed it).
size_t Utf8InvalidPrefixLength(std::string_view s);

// True if all of `s` is valid UTF-8.
bool IsValidUtf8(std::string_view s);

// Appends `s` to `out` with every invalid byte sequence replaced by U+FFFD
// (one replacement per maximal invalid subpart, as the WHATWG decoder does,
// so e.g. a truncated 3-byte sequence becomes one U+FFFD).
void AppendSanitizedUtf8(std::string* out, std::string_view s);

// `s` if it is valid UTF-8, else a copy with invalid sequences replaced.
std::string SanitizeUtf8(std::string_view s);

// The longest prefix of `s` of at most `max_bytes` bytes that does not end
// inside a (valid) multi-byte character. Invalid bytes are left for
// SanitizeUtf8.
std::string_view TruncateUtf8(std::string_view s, size_t max_bytes);

}  // namespace chstream
