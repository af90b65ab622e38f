#include "tests/fuzz/line_checker.h"

#include <algorithm>
#include <variant>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "storage/event.h"
#include "tests/fuzz/fuzz_check.h"

namespace chstream::fuzz {
namespace {

// Any fixed time: the parser copies it into the event.
const absl::Time kReceivedAt = absl::FromUnixSeconds(1700000000);

bool IsBlank(std::string_view s) {
  for (char c : s) {
    if (c != ' ' && c != '\t' && c != '\r') return false;
  }
  return true;
}

}  // namespace

void LineChecker::OnLine(std::string_view line) {
  FUZZ_CHECK(line.find('\n') == std::string_view::npos) << "newline in line";
  FUZZ_CHECK(line.size() <= max_line_bytes_)
      << line.size() << " > max " << max_line_bytes_;
  FUZZ_CHECK(!IsBlank(line)) << "a blank line must be a heartbeat";
  trace_.push_back(
      absl::StrCat("L", absl::string_view(line.data(), line.size())));

  auto result = parser_.Parse("companies", line, kReceivedAt);
  if (const auto* error = std::get_if<ingest::ParseError>(&result)) {
    FUZZ_CHECK(!error->reason.empty()) << "dead letter without a reason";
    ++dead_letters_;
    return;
  }
  const storage::Event& e = std::get<storage::Event>(result);
  ++events_;
  FUZZ_CHECK(e.position == 0) << e.position;
  FUZZ_CHECK(e.stream == "companies") << e.stream;
  FUZZ_CHECK(e.received_at == kReceivedAt);
  FUZZ_CHECK(e.timepoint >= 0) << e.timepoint;
  FUZZ_CHECK(!e.resource_kind.empty());
  FUZZ_CHECK(e.type == storage::EventType::kChanged ||
             e.type == storage::EventType::kDeleted);
  if (e.type == storage::EventType::kChanged) {
    FUZZ_CHECK(!e.data_json.empty() || !e.data_pb.empty())
        << "changed event without data";
  }
  // data_json, set only for an empty object (whose Struct is empty), is the
  // exact bytes of the data object as received.
  if (!e.data_json.empty()) {
    FUZZ_CHECK(e.data_pb.empty()) << "data kept twice";
    FUZZ_CHECK(line.find(e.data_json) != std::string_view::npos)
        << "data_json is not a part of the line";
    FUZZ_CHECK(e.data_json.front() == '{' && e.data_json.back() == '}')
        << e.data_json;
  }
  // company_number is upper-cased and trimmed of ASCII whitespace.
  FUZZ_CHECK(e.company_number == absl::StripAsciiWhitespace(e.company_number))
      << "untrimmed company_number '" << e.company_number << "'";
  FUZZ_CHECK(e.company_number == absl::AsciiStrToUpper(e.company_number))
      << "company_number not upper case '" << e.company_number << "'";
}

void LineChecker::OnHeartbeat() { trace_.push_back("H"); }

void LineChecker::OnOversizedLine(std::string_view prefix, size_t total_bytes) {
  FUZZ_CHECK(total_bytes > max_line_bytes_)
      << total_bytes << " <= max " << max_line_bytes_;
  const size_t kept =
      std::min(total_bytes, ingest::LineFramer::kOversizedPrefixBytes);
  FUZZ_CHECK(prefix.size() == kept) << prefix.size() << " != " << kept;
  FUZZ_CHECK(prefix.find('\n') == std::string_view::npos);
  trace_.push_back(absl::StrCat(
      "O", total_bytes, ":", absl::string_view(prefix.data(), prefix.size())));
  ++dead_letters_;
}

}  // namespace chstream::fuzz
