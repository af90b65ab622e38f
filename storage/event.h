// File: storage/event.h
//
// The plain data types that flow from ingest through storage to the server:
// a normalised upstream event, a company's or a resource's current state, a
// dead letter.
// No behaviour lives here (OptionalBox only holds a value); storage/ depends
// on nothing else in the project but base/.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/time/time.h"

namespace chstream::storage {

// Same numbers as chstream.v1.EventType.
enum class EventType : int { kChanged = 1, kDeleted = 2 };

// The nine upstream streams, by URL path (without the leading slash).
inline constexpr const char* kStreamNames[] = {
    "companies",
    "filings",
    "officers",
    "persons-with-significant-control",
    "charges",
    "insolvency-cases",
    "disqualified-officers",
    "company-exemptions",
    "persons-with-significant-control-statements",
};

struct Address {
  std::string premises;
  std::string address_line_1;
  std::string address_line_2;
  std::string locality;
  std::string region;
  std::string postal_code;
  std::string country;
  std::string care_of;
  std::string po_box;

  bool operator==(const Address&) const = default;
};

// The typed fields of a company-profile resource (chstream.v1.Company).
struct CompanyFields {
  std::string company_name;
  std::string company_status;
  std::string company_type;  // data.type
  std::string jurisdiction;
  std::string date_of_creation;
  std::string date_of_cessation;
  Address registered_office_address;
  std::vector<std::string> sic_codes;

  bool operator==(const CompanyFields&) const = default;
};

// An optional value kept on the heap, with value semantics (copying copies
// the value, == compares values): an Event holding one moves a pointer
// instead of the ~500 bytes of a CompanyFields. Events are moved several
// times between the parser and the store, and each move touched every byte
// of every string of a company profile (issue 13: boxing it cut chstreamd's
// CPU per ingested event by ~10%).
template <typename T>
class OptionalBox {
 public:
  OptionalBox() = default;
  OptionalBox(std::nullopt_t) {}  // NOLINT: like std::optional
  OptionalBox(T value)            // NOLINT: like std::optional
      : p_(std::make_unique<T>(std::move(value))) {}
  OptionalBox(const OptionalBox& other)
      : p_(other.p_ ? std::make_unique<T>(*other.p_) : nullptr) {}
  OptionalBox(OptionalBox&&) noexcept = default;
  OptionalBox& operator=(const OptionalBox& other) {
    if (this != &other) {
      p_ = other.p_ ? std::make_unique<T>(*other.p_) : nullptr;
    }
    return *this;
  }
  OptionalBox& operator=(OptionalBox&&) noexcept = default;

  bool has_value() const { return p_ != nullptr; }
  explicit operator bool() const { return has_value(); }
  const T& operator*() const { return *p_; }
  T& operator*() { return *p_; }
  const T* operator->() const { return p_.get(); }
  T* operator->() { return p_.get(); }
  // Sets a default T and returns it.
  T& emplace() {
    p_ = std::make_unique<T>();
    return *p_;
  }
  void reset() { p_.reset(); }

  friend bool operator==(const OptionalBox& a, const OptionalBox& b) {
    if (!a.has_value() || !b.has_value()) return a.has_value() == b.has_value();
    return *a == *b;
  }

 private:
  std::unique_ptr<T> p_;
};

// One upstream event, validated and normalised.
struct Event {
  // chstream's cursor: 0 until committed, then dense and strictly increasing
  // across all streams.
  uint64_t position = 0;
  std::string stream;  // one of kStreamNames
  int64_t timepoint = 0;
  EventType type = EventType::kChanged;
  std::string resource_kind;
  std::string resource_id;
  std::string resource_uri;
  std::string company_number;  // empty where none applies
  absl::Time published_at = absl::UnixEpoch();
  absl::Time received_at = absl::UnixEpoch();
  std::vector<std::string> fields_changed;
  // The "data" object exactly as the upstream sent it (JSON text), where
  // data_pb cannot carry it: an empty object, whose Struct encoding is
  // empty. The parser leaves it empty otherwise (finding and copying ~1 KB
  // per event that no store keeps cost an eighth of the ingest thread), and
  // so do stores (StoredDataJson below). Empty when the event had no data.
  std::string data_json;
  // The same object encoded as a google.protobuf.Struct message (wire
  // bytes), made once at ingest so that serving never re-parses JSON.
  std::string data_pb;
  // Set for company-profile events that carry data.
  OptionalBox<CompanyFields> company;

  bool operator==(const Event&) const = default;
};

// The JSON text a store keeps for `e`: an event's data is stored once (issue
// 13), as the Struct bytes, which serving sends as they are, and as JSON
// text only when there are none. Both copies made a row ~2.3 KB instead of
// ~1.2 KB: twice the pages to write, checkpoint and read back in a replay.
inline std::string_view StoredDataJson(const Event& e) {
  return e.data_pb.empty() ? std::string_view(e.data_json) : std::string_view();
}

// The current state of a company, from the companies stream.
struct CompanyRecord {
  std::string company_number;
  CompanyFields fields;
  bool deleted = false;
  int64_t last_timepoint = 0;
  uint64_t last_position = 0;
  absl::Time updated_at = absl::UnixEpoch();  // received_at of the last event
  std::string data_json;
  std::string data_pb;

  bool operator==(const CompanyRecord&) const = default;
};

// The current state of one resource of any stream, keyed by its
// resource_uri: the last event's kind, type and timepoint, and the data of
// the last event that carried data.
struct ResourceRecord {
  std::string resource_uri;
  std::string resource_kind;
  // The last non-empty Event::company_number seen for it; empty where none
  // applies (natural disqualified officers).
  std::string company_number;
  bool deleted = false;
  int64_t last_timepoint = 0;
  uint64_t last_position = 0;
  absl::Time updated_at = absl::UnixEpoch();  // received_at of the last event
  std::string data_json;
  std::string data_pb;

  bool operator==(const ResourceRecord&) const = default;
};

// An upstream line that could not be accepted, kept with its raw bytes.
struct DeadLetter {
  std::string stream;
  absl::Time received_at = absl::UnixEpoch();
  std::string reason;
  std::string raw;                   // the line as received (maybe truncated)
  std::optional<int64_t> timepoint;  // when it could be read

  bool operator==(const DeadLetter&) const = default;
};

}  // namespace chstream::storage
