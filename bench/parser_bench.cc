// Single-core throughput of the ingest hot path on company-profile lines
// (upstream-api.md §6.5 E1, the real 1,293-byte capture, varied per line):
//
//   1. EventParser::Parse alone: line -> fully populated storage::Event
//      (validation, data_json, data_pb Struct encoding, company fields).
//   2. LineFramer + EventParser over the same lines as one NDJSON body fed
//      in 16 KiB chunks (lines straddle chunks), as the stream client does.
//   3. For reference: simdjson DOM parse alone, and the Struct encoding alone.
//
//   bazel run --config=opt //bench:parser_bench -- [lines] [rounds]
//
// Target: >= 150,000 company-profile lines/s per core for (1). Exits
// non-zero if any line fails to parse or the target is missed.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/time/time.h"
#include "base/clock.h"
#include "ingest/event_parser.h"
#include "ingest/line_framer.h"
#include "ingest/struct_encoder.h"
#include "simdjson.h"

namespace chstream::ingest {
namespace {

constexpr double kTargetLinesPerSecond = 150'000;

// E1 with placeholders for the varied parts.
constexpr std::string_view kTemplate =
    R"({"resource_kind":"company-profile","resource_uri":"/company/@N","resource_id":"@N","data":{"accounts":{"accounting_reference_date":{"day":"31","month":"07"},"last_accounts":{"made_up_to":"2021-07-31","period_end_on":"2021-07-31","period_start_on":"2020-08-01","type":"total-exemption-full"},"next_accounts":{"due_on":"2023-04-30","period_end_on":"2022-07-31","period_start_on":"2021-08-01"},"next_due":"2023-04-30","next_made_up_to":"2022-07-31"},"can_file":true,"company_name":"@C LTD","company_number":"@N","company_status":"active","confirmation_statement":{"last_made_up_to":"2022-07-19","next_due":"2023-08-02","next_made_up_to":"2023-07-19"},"date_of_creation":"2017-07-20","etag":"e861f92b4d7814ad3bbae90536c5ff4c1ac238bb","jurisdiction":"scotland","links":{"filing_history":"/company/@N/filing-history","officers":"/company/@N/officers","persons_with_significant_control":"/company/@N/persons-with-significant-control","self":"/company/@N"},"registered_office_address":{"address_line_1":"Suite 4f, Ingram House","address_line_2":"227 Ingram Street","country":"Scotland","locality":"Glasgow","postal_code":"G1 1DA"},"sic_codes":["56290"],"type":"ltd"},"event":{"timepoint":@T,"published_at":"2022-08-02T15:21:@S","type":"changed"}})";

std::string Substitute(std::string_view text, std::string_view key,
                       const std::string& value) {
  std::string out;
  size_t start = 0;
  for (size_t at = text.find(key); at != std::string_view::npos;
       at = text.find(key, start)) {
    out.append(text.substr(start, at - start));
    out.append(value);
    start = at + key.size();
  }
  out.append(text.substr(start));
  return out;
}

std::vector<std::string> MakeLines(int n) {
  static const char* const kNames[] = {"FC KIOSKS", "ACME WIDGETS",
                                       "NORTHERN LIGHTS TRADING",
                                       "A & B HOLDINGS", "CAF\xC3\x89 ROYAL"};
  std::vector<std::string> lines;
  lines.reserve(n);
  for (int i = 0; i < n; ++i) {
    char number[16];
    std::snprintf(number, sizeof(number), "SC%06d", 100000 + i);
    char seconds[4];
    std::snprintf(seconds, sizeof(seconds), "%02d", i % 60);
    std::string line = Substitute(kTemplate, "@N", number);
    line = Substitute(line, "@C", kNames[i % 5]);
    line = Substitute(line, "@T", std::to_string(47695461 + i));
    line = Substitute(line, "@S", seconds);
    lines.push_back(std::move(line));
  }
  return lines;
}

struct Result {
  double lines_per_second;
  double megabytes_per_second;
};

template <typename Fn>
Result Measure(const char* name, int rounds, size_t lines_per_round,
               size_t bytes_per_round, Fn fn) {
  Clock* clock = Clock::Real();
  fn();  // warm-up
  absl::Duration best = absl::InfiniteDuration();
  for (int r = 0; r < rounds; ++r) {
    const absl::Time start = clock->Now();
    fn();
    best = std::min(best, clock->Now() - start);
  }
  const double seconds = absl::ToDoubleSeconds(best);
  const Result result{lines_per_round / seconds,
                      bytes_per_round / seconds / 1e6};
  std::printf("%-44s %10.0f lines/s %8.1f MB/s %8.2f us/line\n", name,
              result.lines_per_second, result.megabytes_per_second,
              1e6 * seconds / lines_per_round);
  return result;
}

int Main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 20000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  const std::vector<std::string> lines = MakeLines(n);
  size_t bytes = 0;
  std::string body;
  for (const std::string& line : lines) {
    bytes += line.size();
    body += line;
    body += '\n';
  }
  std::printf(
      "simdjson implementation: %s; %d lines of ~%zu bytes, best of "
      "%d rounds, one thread\n",
      simdjson::get_active_implementation()->name().c_str(), n,
      bytes / lines.size(), rounds);

  const absl::Time received = absl::FromUnixSeconds(1'700'000'000);
  EventParser parser;
  size_t failures = 0;
  size_t checksum = 0;

  // 1. Parse only.
  const Result parse = Measure(
      "EventParser::Parse (company-profile)", rounds, lines.size(), bytes, [&] {
        for (const std::string& line : lines) {
          auto result = parser.Parse("companies", line, received);
          if (auto* event = std::get_if<storage::Event>(&result)) {
            checksum +=
                event->data_pb.size() + event->company->sic_codes.size();
          } else {
            ++failures;
          }
        }
      });

  // 2. Framer + parser over 16 KiB chunks.
  struct Visitor : LineFramer::Visitor {
    EventParser* parser;
    absl::Time received;
    size_t events = 0, failures = 0;
    void OnLine(std::string_view line) override {
      auto result = parser->Parse("companies", line, received);
      if (std::holds_alternative<storage::Event>(result)) {
        ++events;
      } else {
        ++failures;
      }
    }
    void OnHeartbeat() override {}
    void OnOversizedLine(std::string_view, size_t) override { ++failures; }
  } visitor;
  visitor.parser = &parser;
  visitor.received = received;
  LineFramer framer;
  Measure("LineFramer + EventParser (16 KiB chunks)", rounds, lines.size(),
          body.size(), [&] {
            constexpr size_t kChunk = 16 << 10;
            for (size_t pos = 0; pos < body.size(); pos += kChunk) {
              framer.Feed(std::string_view(body).substr(pos, kChunk), visitor);
            }
            if (framer.Finish() != 0) ++failures;
          });
  failures += visitor.failures;
  if (visitor.events != lines.size() * (rounds + 1)) ++failures;

  // 3. Reference points.
  simdjson::dom::parser dom;
  std::vector<simdjson::padded_string> padded;
  padded.reserve(lines.size());
  for (const std::string& line : lines) padded.emplace_back(line);
  Measure("  simdjson DOM parse only", rounds, lines.size(), bytes, [&] {
    for (const simdjson::padded_string& p : padded) {
      simdjson::dom::element root;
      if (dom.parse(p).get(root)) ++failures;
    }
  });
  simdjson::dom::element root;
  if (dom.parse(padded[0]).get(root)) return 1;
  simdjson::dom::object data = root["data"].get_object().value();
  StructEncoder encoder;
  std::string out;
  Measure("  Struct encoding of data only", rounds, lines.size(), bytes, [&] {
    for (size_t i = 0; i < lines.size(); ++i) {
      out.clear();
      encoder.AppendStruct(data, &out);
      checksum += out.size();
    }
  });

  std::printf("checksum %zu, failures %zu\n", checksum, failures);
  if (failures != 0) {
    std::printf("FAIL: some lines did not parse\n");
    return 1;
  }
  if (parse.lines_per_second < kTargetLinesPerSecond) {
    std::printf("FAIL: below the target of %.0f lines/s\n",
                kTargetLinesPerSecond);
    return 1;
  }
  std::printf("OK: %.0f lines/s >= target %.0f lines/s\n",
              parse.lines_per_second, kTargetLinesPerSecond);
  return 0;
}

}  // namespace
}  // namespace chstream::ingest

int main(int argc, char** argv) { return chstream::ingest::Main(argc, argv); }
