// File: ingest/event_parser.h
//
// Turns one complete upstream line (upstream-api.md §6) into a validated,
// normalised storage::Event, or into a specific reason why it cannot be
// accepted (the line then goes to the dead-letter table).
//
// Validation:
//   - the line is one JSON object (unknown extra keys are fine; a repeated
//     known key is an error);
//   - resource_kind: non-empty string; resource_uri, resource_id: strings;
//   - event: object with
//       timepoint: integer >= 0 that fits int64, or a string of 1-19 digits
//                  (an upstream type quirk);
//       published_at: string in any format of §6.2 (see ParsePublishedAt);
//       type: "changed" or "deleted";
//       fields_changed: optional array of strings (null = absent);
//   - data: object, required for "changed"; optional for "deleted", where
//     null counts as absent; containers nested at most 32 levels deep
//     (data itself is level 1): a deeper Struct is beyond protobuf parsers'
//     recursion limit of 100 (two message levels per JSON level);
//   - what chstream extracts from data has the right type (null counts as
//     absent): data.company_number is a string, for every kind; for
//     company-profile it is required and equal to resource_id, and the typed
//     fields below are strings (registered_office_address an object of
//     strings, sic_codes an array of strings).
// Normalisation:
//   - company_number: data.company_number when it is a non-blank string,
//     else from resource_uri (CompanyNumberFromUri); then upper-cased and
//     trimmed of ASCII whitespace; empty when none applies.
//   - data_json: the exact bytes of the data object as received.
//   - data_pb: the data object as google.protobuf.Struct wire bytes
//     (struct_encoder.h).
//   - company: for resource_kind "company-profile" with data, the typed
//     fields (storage::CompanyFields); a missing or null field is left
//     empty.
//   - position stays 0 (assigned at commit); stream and received_at are the
//     caller's.
// Reasons are specific, e.g. "event.timepoint missing",
// "invalid JSON at byte 17: expected ':' after object key",
// "event.type must be changed or deleted, got \"updated\"",
// "published_at not a timestamp: ...",
// "data.company_number must be a string, got object",
// "data nested deeper than 32 levels". Values quoted in reasons are cut to
// 64 bytes at a UTF-8 character boundary. ParseError.timepoint is set whenever
// event.timepoint could be read, even if something else was wrong.
//
// Speed: simdjson's DOM parser (runtime-dispatched SIMD kernels) over a
// reusable padded copy of the line; one parser and one Struct encoder are
// reused across calls.
//
// Thread-safety: an EventParser is not thread-safe (it owns reusable
// buffers); use one per connection/thread. The free functions are
// thread-safe.
//
//   EventParser parser;
//   auto result = parser.Parse("companies", line, clock->Now());
//   if (auto* event = std::get_if<storage::Event>(&result)) { ... }
//   else { const ParseError& error = std::get<ParseError>(result); ... }
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ingest/struct_encoder.h"
#include "simdjson.h"
#include "storage/event.h"

namespace chstream::ingest {

struct ParseError {
  std::string reason;
  std::optional<int64_t> timepoint;  // set whenever it could be read
};

class EventParser {
 public:
  EventParser();
  EventParser(const EventParser&) = delete;
  EventParser& operator=(const EventParser&) = delete;

  // Parses one complete line (no newline) received on `stream` (e.g.
  // "companies"). On success returns a fully populated storage::Event
  // (position 0). On failure returns the reason.
  std::variant<storage::Event, ParseError> Parse(std::string_view stream,
                                                 std::string_view line,
                                                 absl::Time received_at);

 private:
  // Copies `text` into padded_ (with SIMDJSON_PADDING zero bytes after it).
  void CopyToPadded(std::string_view text);

  // Parses the first `size` bytes of padded_ into *root: with parser_, which
  // refuses documents nested deeper than data may be, and, only for those,
  // again with deep_parser_. *depth_checked says whether parser_ did it.
  simdjson::error_code ParsePadded(size_t size, simdjson::dom::element* root,
                                   bool* depth_checked);

  // Refuses documents deeper than data may be below the envelope: a line
  // it accepts needs no depth check of data of its own.
  simdjson::dom::parser parser_;
  // simdjson's default depth limit; made on the first deeper line.
  std::unique_ptr<simdjson::dom::parser> deep_parser_;
  StructEncoder encoder_;
  std::unique_ptr<char[]> padded_;
  size_t padded_capacity_ = 0;  // usable bytes, excluding the padding
};

// Parses an upstream published_at (upstream-api.md §6.2):
//   YYYY-MM-DDTHH:MM:SS[.f{1,9}][Z | +HH:MM | -HH:MM]
// 't' and 'z' are accepted in lower case too. With no zone suffix the time
// is UTC (CH formats it in UTC). Every field is range-checked (the day
// against the month, leap years included; seconds 00-59). INVALID_ARGUMENT
// with the reason otherwise.
absl::StatusOr<absl::Time> ParsePublishedAt(std::string_view text);

// The company number segment of a resource URI: "/company/{n}" or
// "/company/{n}/..." and the exemptions form "company/{n}/exemptions" (no
// leading slash). Returns it as written (the parser normalises case and
// spaces); "" for anything else (e.g. disqualified officers'
// "/disqualified-officers/natural/{id}").
std::string CompanyNumberFromUri(std::string_view resource_uri);

}  // namespace chstream::ingest
