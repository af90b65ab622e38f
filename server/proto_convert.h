// File: server/proto_convert.h
//
// Conversions between storage types and chstream.v1 messages.
//
// Event.data, Company.data and Resource.data are stored as
// google.protobuf.Struct wire bytes (made once at ingest). ToProto puts those
// bytes on the message as an unknown length-delimited field with the same
// number, which serialises to exactly the bytes of a set Struct field: serving
// an event copies bytes and never parses JSON or builds a Struct.
#pragma once

#include <google/protobuf/timestamp.pb.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "chstream/v1/chstream.pb.h"
#include "storage/event.h"
#include "storage/store.h"

namespace chstream::server {

google::protobuf::Timestamp ToTimestamp(absl::Time t);
absl::Time FromTimestamp(const google::protobuf::Timestamp& ts);

// Fills `out` (cleared first) from `event`.
void ToProto(const storage::Event& event, v1::Event* out);
// The same, moving the strings out of `event` (left valid, unspecified).
void ToProto(storage::Event&& event, v1::Event* out);
void ToProto(const storage::CompanyRecord& company, v1::Company* out);
void ToProto(const storage::ResourceRecord& resource, v1::Resource* out);

// `event` as chstream.v1.Event wire bytes: made once per live event for all
// its subscribers (server/subscription_hub.h).
std::string SerializeEvent(const storage::Event& event);
// Clears `out` and sets its `event` to `event_bytes` (from SerializeEvent)
// without parsing them: they go out as they are.
void SetSerializedEvent(const std::string& event_bytes,
                        v1::SubscribeResponse* out);

// Caps on a request's filter lists (INVALID_ARGUMENT beyond, naming the
// cap): they bound the memory and matching work one request can cause.
inline constexpr int kMaxFilterCompanyNumbers = 1000;
inline constexpr int kMaxFilterValues = 100;  // streams, resource kinds, types

// Validates a filter from a request: lists longer than the caps above,
// unknown stream names or resource kinds are INVALID_ARGUMENT naming the cap
// or the allowed values; company numbers are normalised.
absl::StatusOr<storage::Filter> FromProto(const v1::EventFilter& filter);

// A short human-readable summary of a validated filter (for status and
// logs): lists of up to 5 values whole, longer ones as
// "companies=1000 company numbers (first five|...)"; bounded in size
// whatever the filter.
std::string FilterToString(const storage::Filter& filter);

// Trims and upper-cases a company number, then checks it is 8 characters:
// digits, or a 2-letter prefix and 6 digits. INVALID_ARGUMENT otherwise.
absl::StatusOr<std::string> NormalizeCompanyNumber(absl::string_view text);

// The resource kinds chstream knows, per upstream-api.md §1.
const std::vector<std::string>& KnownResourceKinds();

// Checks a request's list of resource kinds (`field` names it in messages):
// at most kMaxFilterValues, each one of KnownResourceKinds().
// INVALID_ARGUMENT naming the cap or the allowed kinds otherwise.
absl::StatusOr<std::vector<std::string>> ValidateResourceKinds(
    const google::protobuf::RepeatedPtrField<std::string>& kinds,
    absl::string_view field);

// ListCompanyResources page tokens: opaque (URL-safe base64) to clients,
// they hold the company number and the cursor of the last resource sent.
std::string EncodeResourcePageToken(absl::string_view company_number,
                                    const storage::ResourceCursor& cursor);
// INVALID_ARGUMENT unless `token` came from EncodeResourcePageToken for
// `company_number`.
absl::StatusOr<storage::ResourceCursor> DecodeResourcePageToken(
    absl::string_view token, absl::string_view company_number);

}  // namespace chstream::server
