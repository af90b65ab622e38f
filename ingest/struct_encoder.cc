#include "ingest/struct_encoder.h"

#include <cstdint>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace chstream::ingest {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

// Wire tags: (field_number << 3) | wire_type.
constexpr char kTagStructFields = 0x0A;  // Struct.fields = 1, LEN
constexpr char kTagEntryKey = 0x0A;      // entry key = 1, LEN
constexpr char kTagEntryValue = 0x12;    // entry value = 2, LEN
constexpr char kTagNull = 0x08;          // Value.null_value = 1, VARINT
constexpr char kTagNumber = 0x11;        // Value.number_value = 2, I64
constexpr char kTagString = 0x1A;        // Value.string_value = 3, LEN
constexpr char kTagBool = 0x20;          // Value.bool_value = 4, VARINT
constexpr char kTagStruct = 0x2A;        // Value.struct_value = 5, LEN
constexpr char kTagList = 0x32;          // Value.list_value = 6, LEN
constexpr char kTagListValues = 0x0A;    // ListValue.values = 1, LEN

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

// The writers below fill a buffer sized exactly by the Measure pass, through
// a cursor, so there are no per-piece capacity checks.
void PutVarint(uint64_t v, char*& p) {
  while (v >= 0x80) {
    *p++ = static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<char>(v);
}

// Size of a length-delimited field: tag + length + body.
size_t LenFieldSize(size_t body) { return 1 + VarintSize(body) + body; }

void PutLenHeader(char tag, size_t body, char*& p) {
  *p++ = tag;
  PutVarint(body, p);
}

void PutBytes(std::string_view bytes, char*& p) {
  std::memcpy(p, bytes.data(), bytes.size());
  p += bytes.size();
}

void PutDouble(double d, char*& p) {
  uint64_t bits;
  std::memcpy(&bits, &d, sizeof(bits));
  for (int i = 0; i < 8; ++i) *p++ = static_cast<char>(bits >> (8 * i));
}

double NumberOf(element value) {
  switch (value.type()) {
    case element_type::INT64:
      return static_cast<double>(value.get_int64().value_unsafe());
    case element_type::UINT64:
      return static_cast<double>(value.get_uint64().value_unsafe());
    default:
      return value.get_double().value_unsafe();
  }
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// True if the integer literal (optional '-', then digits) is outside the
// range simdjson accepts: [-2^63, 2^64 - 1].
bool IntegerOverflows(std::string_view literal) {
  const bool negative = !literal.empty() && literal.front() == '-';
  std::string_view digits = literal.substr(negative ? 1 : 0);
  const std::string_view limit =
      negative ? "9223372036854775808" : "18446744073709551615";
  if (digits.size() != limit.size()) return digits.size() > limit.size();
  return digits > limit;
}

}  // namespace

void StructEncoder::AppendStruct(object obj, std::string* out) {
  sizes_.clear();
  const size_t start = out->size();
  out->resize(start + MeasureStruct(obj));
  cursor_ = 0;
  char* p = out->data() + start;
  WriteStruct(obj, p);
}

void StructEncoder::AppendValue(element value, std::string* out) {
  sizes_.clear();
  const size_t start = out->size();
  out->resize(start + MeasureValue(value));
  cursor_ = 0;
  char* p = out->data() + start;
  WriteValue(value, p);
}

size_t StructEncoder::MeasureValue(element value) {
  switch (value.type()) {
    case element_type::NULL_VALUE:
    case element_type::BOOL:
      return 2;
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE:
      return 9;
    case element_type::STRING:
      return LenFieldSize(value.get_string_length().value_unsafe());
    case element_type::OBJECT: {
      const size_t slot = sizes_.size();
      sizes_.push_back(0);
      const size_t body = MeasureStruct(value.get_object().value_unsafe());
      sizes_[slot] = body;
      return LenFieldSize(body);
    }
    case element_type::ARRAY: {
      const size_t slot = sizes_.size();
      sizes_.push_back(0);
      const size_t body = MeasureList(value.get_array().value_unsafe());
      sizes_[slot] = body;
      return LenFieldSize(body);
    }
  }
  return 0;
}

size_t StructEncoder::MeasureStruct(object obj) {
  size_t total = 0;
  for (const auto field : obj) {
    const size_t value_size = MeasureValue(field.value);
    const size_t entry =
        LenFieldSize(field.key.size()) + LenFieldSize(value_size);
    total += LenFieldSize(entry);
  }
  return total;
}

size_t StructEncoder::MeasureList(array arr) {
  size_t total = 0;
  for (const element item : arr) total += LenFieldSize(MeasureValue(item));
  return total;
}

// The Value body size of `value`, whose nested sizes (if any) start at
// sizes_[cursor_] (not consumed).
size_t StructEncoder::PeekValueSize(element value) const {
  switch (value.type()) {
    case element_type::NULL_VALUE:
    case element_type::BOOL:
      return 2;
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE:
      return 9;
    case element_type::STRING:
      return LenFieldSize(value.get_string_length().value_unsafe());
    case element_type::OBJECT:
    case element_type::ARRAY:
      return LenFieldSize(sizes_[cursor_]);
  }
  return 0;
}

void StructEncoder::WriteValue(element value, char*& p) {
  switch (value.type()) {
    case element_type::NULL_VALUE:
      *p++ = kTagNull;
      *p++ = 0;
      return;
    case element_type::BOOL:
      *p++ = kTagBool;
      *p++ = value.get_bool().value_unsafe() ? 1 : 0;
      return;
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE:
      *p++ = kTagNumber;
      PutDouble(NumberOf(value), p);
      return;
    case element_type::STRING: {
      const std::string_view s = value.get_string().value_unsafe();
      PutLenHeader(kTagString, s.size(), p);
      PutBytes(s, p);
      return;
    }
    case element_type::OBJECT:
      PutLenHeader(kTagStruct, sizes_[cursor_++], p);
      WriteStruct(value.get_object().value_unsafe(), p);
      return;
    case element_type::ARRAY:
      PutLenHeader(kTagList, sizes_[cursor_++], p);
      WriteList(value.get_array().value_unsafe(), p);
      return;
  }
}

void StructEncoder::WriteStruct(object obj, char*& p) {
  for (const auto field : obj) {
    const size_t value_size = PeekValueSize(field.value);
    const size_t entry =
        LenFieldSize(field.key.size()) + LenFieldSize(value_size);
    PutLenHeader(kTagStructFields, entry, p);
    PutLenHeader(kTagEntryKey, field.key.size(), p);
    PutBytes(field.key, p);
    PutLenHeader(kTagEntryValue, value_size, p);
    WriteValue(field.value, p);
  }
}

void StructEncoder::WriteList(array arr, char*& p) {
  for (const element item : arr) {
    PutLenHeader(kTagListValues, PeekValueSize(item), p);
    WriteValue(item, p);
  }
}

std::optional<std::string> WidenOversizedIntegers(std::string_view json) {
  std::optional<std::string> widened;
  size_t copied = 0;  // json[0, copied) is already in *widened
  size_t i = 0;
  while (i < json.size()) {
    const char c = json[i];
    if (c == '"') {
      // Skip the string, honouring backslash escapes.
      ++i;
      while (i < json.size() && json[i] != '"') i += json[i] == '\\' ? 2 : 1;
      ++i;
      continue;
    }
    if (c != '-' && !IsDigit(c)) {
      ++i;
      continue;
    }
    const size_t start = i;
    if (c == '-') ++i;
    while (i < json.size() && IsDigit(json[i])) ++i;
    const bool is_float =
        i < json.size() && (json[i] == '.' || json[i] == 'e' || json[i] == 'E');
    if (is_float) {
      while (i < json.size() &&
             (IsDigit(json[i]) || json[i] == '.' || json[i] == 'e' ||
              json[i] == 'E' || json[i] == '+' || json[i] == '-')) {
        ++i;
      }
      continue;
    }
    if (!IntegerOverflows(json.substr(start, i - start))) continue;
    if (!widened.has_value()) widened.emplace().reserve(json.size() + 16);
    widened->append(json.substr(copied, i - copied));
    widened->append(".0");
    copied = i;
  }
  if (widened.has_value()) widened->append(json.substr(copied));
  return widened;
}

absl::StatusOr<std::string> JsonObjectToStructBytes(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(json);
  element root;
  simdjson::error_code error = parser.parse(padded).get(root);
  if (error == simdjson::NUMBER_ERROR) {
    if (std::optional<std::string> widened = WidenOversizedIntegers(json)) {
      padded = simdjson::padded_string(*widened);
      error = parser.parse(padded).get(root);
    }
  }
  if (error) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid JSON: ", simdjson::error_message(error)));
  }
  object obj;
  if (root.get_object().get(obj)) {
    return absl::InvalidArgumentError("JSON value is not an object");
  }
  std::string out;
  StructEncoder encoder;
  encoder.AppendStruct(obj, &out);
  return out;
}

}  // namespace chstream::ingest
