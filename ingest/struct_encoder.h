// File: ingest/struct_encoder.h
//
// Encodes a parsed JSON value as protobuf wire bytes of the well-known types
// google.protobuf.Struct / Value / ListValue, without libprotobuf, so that
// ingest/ stays free of protobuf and the server can put the bytes of an
// event's `data` straight into a Struct field without re-parsing JSON.
//
// The messages (google/protobuf/struct.proto):
//   Struct    { map<string, Value> fields = 1; }
//             (each entry: a length-delimited message {string key = 1;
//              Value value = 2;})
//   Value     { oneof kind { NullValue null_value = 1;  // enum, varint 0
//                            double number_value = 2;   // fixed64
//                            string string_value = 3;
//                            bool bool_value = 4;       // varint
//                            Struct struct_value = 5;
//                            ListValue list_value = 6; } }
//   ListValue { repeated Value values = 1; }
//
// The output is what libprotobuf itself writes for the same message: tags in
// field order, minimal varints, both key and value in every map entry, oneof
// members written even when zero. Map entries follow the JSON object's key
// order; libprotobuf's deterministic serialisation sorts them, so for JSON
// whose keys are sorted at every level (as the upstream's Go encoder writes
// them) the bytes are identical to deterministic serialisation.
//
// Numbers become doubles, as protobuf's JSON parser does: integers beyond
// 2^53 round to the nearest double. Exceptions: simdjson reads "-0" as the
// integer 0, so it encodes as +0.0 (equal as a number, different sign bit);
// duplicate object keys produce duplicate map entries (a protobuf parser
// keeps the last).
//
// Thread-safety: a StructEncoder keeps scratch space; use one per thread.
// The free functions are thread-safe.
//
//   StructEncoder encoder;
//   std::string bytes;
//   encoder.AppendStruct(dom_object, &bytes);
//   // or, from text:
//   absl::StatusOr<std::string> bytes = JsonObjectToStructBytes(R"({"a":1})");
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "simdjson.h"

namespace chstream::ingest {

class StructEncoder {
 public:
  StructEncoder() = default;
  StructEncoder(const StructEncoder&) = delete;
  StructEncoder& operator=(const StructEncoder&) = delete;

  // Appends the encoding of `object` as a google.protobuf.Struct message.
  void AppendStruct(simdjson::dom::object object, std::string* out);

  // Appends the encoding of `value` as a google.protobuf.Value message.
  void AppendValue(simdjson::dom::element value, std::string* out);

 private:
  size_t MeasureValue(simdjson::dom::element value);
  size_t MeasureStruct(simdjson::dom::object object);
  size_t MeasureList(simdjson::dom::array array);
  size_t PeekValueSize(simdjson::dom::element value) const;
  // Write into a buffer already sized by the Measure pass; `p` advances.
  void WriteValue(simdjson::dom::element value, char*& p);
  void WriteStruct(simdjson::dom::object object, char*& p);
  void WriteList(simdjson::dom::array array, char*& p);

  // Body sizes of every nested Struct/ListValue, in pre-order: filled by the
  // Measure pass, consumed by the Write pass (so encoding is linear).
  std::vector<size_t> sizes_;
  size_t cursor_ = 0;
};

// Parses `json` (a JSON object) and returns its Struct encoding.
// INVALID_ARGUMENT if it is not valid JSON or not an object. Integers too
// large for 64 bits are accepted as doubles (see WidenOversizedIntegers).
absl::StatusOr<std::string> JsonObjectToStructBytes(std::string_view json);

// simdjson 3.0 rejects integer literals outside [-2^63, 2^64), which are
// valid JSON and which Go writes for large float64 values (e.g.
// 123456789012345680000). If `json` has such literals outside strings,
// returns a copy in which each of them has ".0" appended, so that simdjson
// parses it as the same number, a double; otherwise nullopt. Intended as a
// retry after simdjson::NUMBER_ERROR.
std::optional<std::string> WidenOversizedIntegers(std::string_view json);

}  // namespace chstream::ingest
