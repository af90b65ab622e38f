#include "server/proto_convert.h"

#include <google/protobuf/unknown_field_set.h>

#include <type_traits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace chstream::server {
namespace {

constexpr int kEventDataField = 12;
constexpr int kCompanyDataField = 14;
constexpr int kResourceDataField = 8;
// Page tokens start with this (a version, should their layout change).
constexpr absl::string_view kResourceTokenPrefix = "r1:";

v1::EventType ToProto(storage::EventType t) {
  return t == storage::EventType::kDeleted ? v1::EVENT_TYPE_DELETED
                                           : v1::EVENT_TYPE_CHANGED;
}

void SetStructBytes(const std::string& bytes, int field,
                    google::protobuf::Message* msg) {
  if (bytes.empty()) return;
  msg->GetReflection()->MutableUnknownFields(msg)->AddLengthDelimited(field,
                                                                      bytes);
}

}  // namespace

google::protobuf::Timestamp ToTimestamp(absl::Time t) {
  google::protobuf::Timestamp ts;
  const int64_t micros = absl::ToUnixMicros(t);
  int64_t seconds = micros / 1'000'000;
  int64_t rem = micros % 1'000'000;
  if (rem < 0) {
    rem += 1'000'000;
    --seconds;
  }
  ts.set_seconds(seconds);
  ts.set_nanos(static_cast<int32_t>(rem * 1000));
  return ts;
}

absl::Time FromTimestamp(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

namespace {

// Both ToProto(Event) overloads: E is `const storage::Event&` (copies the
// strings) or `storage::Event` (moves them: a replay's events are read for
// this message only, and data_pb is most of its bytes).
template <typename E>
void EventToProto(E&& e, v1::Event* out) {
  constexpr bool kMove = !std::is_lvalue_reference_v<E>;
  out->Clear();
  out->set_position(e.position);
  out->set_stream(std::forward<E>(e).stream);
  out->set_timepoint(e.timepoint);
  out->set_type(ToProto(e.type));
  out->set_resource_kind(std::forward<E>(e).resource_kind);
  out->set_resource_id(std::forward<E>(e).resource_id);
  out->set_resource_uri(std::forward<E>(e).resource_uri);
  out->set_company_number(std::forward<E>(e).company_number);
  *out->mutable_published_at() = ToTimestamp(e.published_at);
  *out->mutable_received_at() = ToTimestamp(e.received_at);
  for (auto& f : e.fields_changed) {
    if constexpr (kMove) {
      out->add_fields_changed(std::move(f));
    } else {
      out->add_fields_changed(f);
    }
  }
  if constexpr (kMove) {
    if (!e.data_pb.empty()) {
      *out->GetReflection()->MutableUnknownFields(out)->AddLengthDelimited(
          kEventDataField) = std::move(e.data_pb);
    }
  } else {
    SetStructBytes(e.data_pb, kEventDataField, out);
  }
}

}  // namespace

void ToProto(const storage::Event& e, v1::Event* out) { EventToProto(e, out); }

void ToProto(storage::Event&& e, v1::Event* out) {
  EventToProto(std::move(e), out);
}

std::string SerializeEvent(const storage::Event& event) {
  v1::Event message;
  EventToProto(event, &message);
  return message.SerializeAsString();
}

void SetSerializedEvent(const std::string& event_bytes,
                        v1::SubscribeResponse* out) {
  out->Clear();
  // An unknown field with the number of `event` serialises to the bytes of
  // a set `event`, as SetStructBytes does for data.
  out->GetReflection()->MutableUnknownFields(out)->AddLengthDelimited(
      v1::SubscribeResponse::kEventFieldNumber, event_bytes);
}

void ToProto(const storage::CompanyRecord& c, v1::Company* out) {
  out->Clear();
  out->set_company_number(c.company_number);
  out->set_company_name(c.fields.company_name);
  out->set_company_status(c.fields.company_status);
  out->set_company_type(c.fields.company_type);
  out->set_jurisdiction(c.fields.jurisdiction);
  out->set_date_of_creation(c.fields.date_of_creation);
  out->set_date_of_cessation(c.fields.date_of_cessation);
  const storage::Address& a = c.fields.registered_office_address;
  v1::Address* pa = out->mutable_registered_office_address();
  pa->set_premises(a.premises);
  pa->set_address_line_1(a.address_line_1);
  pa->set_address_line_2(a.address_line_2);
  pa->set_locality(a.locality);
  pa->set_region(a.region);
  pa->set_postal_code(a.postal_code);
  pa->set_country(a.country);
  pa->set_care_of(a.care_of);
  pa->set_po_box(a.po_box);
  for (const std::string& s : c.fields.sic_codes) out->add_sic_codes(s);
  out->set_deleted(c.deleted);
  out->set_last_timepoint(c.last_timepoint);
  out->set_last_position(c.last_position);
  *out->mutable_updated_at() = ToTimestamp(c.updated_at);
  SetStructBytes(c.data_pb, kCompanyDataField, out);
}

void ToProto(const storage::ResourceRecord& r, v1::Resource* out) {
  out->Clear();
  out->set_resource_uri(r.resource_uri);
  out->set_resource_kind(r.resource_kind);
  out->set_company_number(r.company_number);
  out->set_deleted(r.deleted);
  out->set_last_timepoint(r.last_timepoint);
  out->set_last_position(r.last_position);
  *out->mutable_updated_at() = ToTimestamp(r.updated_at);
  SetStructBytes(r.data_pb, kResourceDataField, out);
}

const std::vector<std::string>& KnownResourceKinds() {
  static const auto* const kinds = new std::vector<std::string>{
      "company-profile",
      "filing-history",
      "company-officers",
      "company-psc-individual",
      "company-psc-corporate",
      "company-psc-legal",
      "company-psc-supersecure",
      "individual-beneficial-owner",
      "corporate-entity-beneficial-owner",
      "legal-person-beneficial-owner",
      "super-secure-beneficial-owner",
      "company-charges",
      "company-insolvency",
      "disqualified-officer-natural",
      "disqualified-officer-corporate",
      "company-exemptions",
      "persons-with-significant-control-statement",
  };
  return *kinds;
}

absl::StatusOr<std::string> NormalizeCompanyNumber(absl::string_view text) {
  std::string n = absl::AsciiStrToUpper(absl::StripAsciiWhitespace(text));
  auto digit = [&](size_t i) {
    return absl::ascii_isdigit(static_cast<unsigned char>(n[i]));
  };
  auto letter = [&](size_t i) {
    return absl::ascii_isalpha(static_cast<unsigned char>(n[i]));
  };
  bool ok = n.size() == 8 && (digit(0) == digit(1)) &&
            (digit(0) || (letter(0) && letter(1)));
  for (size_t i = 2; ok && i < n.size(); ++i) ok = digit(i);
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid company number '", text,
        "': expected 8 characters, digits (\"00006400\") or a 2-letter "
        "prefix and 6 digits (\"SC571653\")"));
  }
  return n;
}

absl::StatusOr<storage::Filter> FromProto(const v1::EventFilter& f) {
  // Caps first, before any per-entry work: a huge list is refused cheaply.
  const auto too_many = [](absl::string_view field, int size, int cap) {
    return absl::InvalidArgumentError(absl::StrCat("filter.", field, " has ",
                                                   size, " entries; at most ",
                                                   cap, " are allowed"));
  };
  if (f.company_numbers_size() > kMaxFilterCompanyNumbers) {
    return too_many("company_numbers", f.company_numbers_size(),
                    kMaxFilterCompanyNumbers);
  }
  if (f.streams_size() > kMaxFilterValues) {
    return too_many("streams", f.streams_size(), kMaxFilterValues);
  }
  if (f.types_size() > kMaxFilterValues) {
    return too_many("types", f.types_size(), kMaxFilterValues);
  }
  storage::Filter out;
  for (const std::string& s : f.streams()) {
    bool known = false;
    for (const char* name : storage::kStreamNames) known |= (s == name);
    if (!known) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown stream '", s, "' in filter.streams; allowed: ",
                       absl::StrJoin(storage::kStreamNames, ", ")));
    }
    out.streams.push_back(s);
  }
  absl::StatusOr<std::vector<std::string>> kinds =
      ValidateResourceKinds(f.resource_kinds(), "filter.resource_kinds");
  if (!kinds.ok()) return kinds.status();
  out.resource_kinds = *std::move(kinds);
  for (const std::string& n : f.company_numbers()) {
    absl::StatusOr<std::string> norm = NormalizeCompanyNumber(n);
    if (!norm.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("filter.company_numbers: ", norm.status().message()));
    }
    out.company_numbers.push_back(*std::move(norm));
  }
  for (int t : f.types()) {
    if (t == v1::EVENT_TYPE_CHANGED) {
      out.types.push_back(storage::EventType::kChanged);
    } else if (t == v1::EVENT_TYPE_DELETED) {
      out.types.push_back(storage::EventType::kDeleted);
    } else {
      return absl::InvalidArgumentError(
          "filter.types: allowed values are EVENT_TYPE_CHANGED and "
          "EVENT_TYPE_DELETED");
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> ValidateResourceKinds(
    const google::protobuf::RepeatedPtrField<std::string>& kinds,
    absl::string_view field) {
  if (kinds.size() > kMaxFilterValues) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " has ", kinds.size(), " entries; at most ",
                     kMaxFilterValues, " are allowed"));
  }
  const std::vector<std::string>& known = KnownResourceKinds();
  std::vector<std::string> out;
  for (const std::string& k : kinds) {
    if (std::find(known.begin(), known.end(), k) == known.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown resource kind '", k, "' in ", field,
                       "; allowed: ", absl::StrJoin(known, ", ")));
    }
    out.push_back(k);
  }
  return out;
}

std::string EncodeResourcePageToken(absl::string_view company_number,
                                    const storage::ResourceCursor& cursor) {
  // Length-prefixed, so that any byte may appear in a kind or URI.
  const std::string raw =
      absl::StrCat(kResourceTokenPrefix, company_number.size(), ":",
                   company_number, cursor.resource_kind.size(), ":",
                   cursor.resource_kind, cursor.resource_uri);
  return absl::WebSafeBase64Escape(raw);
}

absl::StatusOr<storage::ResourceCursor> DecodeResourcePageToken(
    absl::string_view token, absl::string_view company_number) {
  const auto invalid = [&company_number] {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid page_token: pass the next_page_token of a previous "
        "ListCompanyResources response for company ",
        company_number, " unchanged, or an empty one for the first page"));
  };
  std::string raw;
  if (!absl::WebSafeBase64Unescape(token, &raw)) return invalid();
  absl::string_view rest = raw;
  if (!absl::ConsumePrefix(&rest, kResourceTokenPrefix)) return invalid();
  // Reads "<length>:<bytes>" from the front of `rest`.
  const auto take = [&rest](absl::string_view* out) {
    const size_t colon = rest.find(':');
    size_t n = 0;
    if (colon == absl::string_view::npos || colon == 0 || colon > 6 ||
        !absl::SimpleAtoi(rest.substr(0, colon), &n) ||
        n > rest.size() - colon - 1) {
      return false;
    }
    *out = rest.substr(colon + 1, n);
    rest.remove_prefix(colon + 1 + n);
    return true;
  };
  absl::string_view number, kind;
  if (!take(&number) || number != company_number || !take(&kind) ||
      kind.empty() || rest.empty()) {
    return invalid();
  }
  return storage::ResourceCursor{std::string(kind), std::string(rest)};
}

std::string FilterToString(const storage::Filter& f) {
  // Short lists whole; longer ones as a count and the first few, so that
  // GetStatus stays small whatever the filters (a list can hold 1,000
  // company numbers).
  constexpr size_t kShown = 5;
  const auto part = [](absl::string_view name, absl::string_view noun,
                       const std::vector<std::string>& values) {
    if (values.size() <= kShown) {
      return absl::StrCat(name, "=", absl::StrJoin(values, "|"));
    }
    return absl::StrCat(
        name, "=", values.size(), " ", noun, " (",
        absl::StrJoin(values.begin(), values.begin() + kShown, "|"), "|...)");
  };
  std::vector<std::string> parts;
  if (!f.streams.empty())
    parts.push_back(part("streams", "streams", f.streams));
  if (!f.resource_kinds.empty()) {
    parts.push_back(part("kinds", "resource kinds", f.resource_kinds));
  }
  if (!f.company_numbers.empty()) {
    parts.push_back(part("companies", "company numbers", f.company_numbers));
  }
  if (!f.types.empty()) {
    std::vector<std::string> types;
    for (storage::EventType t : f.types) {
      types.push_back(v1::EventType_Name(static_cast<int>(t)));
    }
    parts.push_back(part("types", "types", types));
  }
  return parts.empty() ? "all" : absl::StrJoin(parts, " ");
}

}  // namespace chstream::server
