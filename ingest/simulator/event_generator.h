// File: ingest/simulator/event_generator.h
//
// Deterministic generator of realistic Companies House stream events, one
// generator per stream. Each call to Next() produces one compact JSON line
// (without the trailing '\n') laid out the way CH's Go back end writes it
// (upstream-api.md §4.5 and §6):
//
//   * envelope keys in the order resource_kind, resource_uri, resource_id,
//     data, event; event keys fields_changed (only when non-empty),
//     timepoint, published_at, type; every key inside data sorted
//     alphabetically at every level;
//   * per-stream quirks: string-typed numbers (ARD day/month, insolvency case
//     number), insolvency status as an array, the exemptions resource_uri
//     without a leading slash, disqualified officers with no company,
//     filings with fields_changed ["links.document_metadata"];
//   * several published_at styles ("2022-08-02T15:21:06",
//     "...06.333257Z", "...06.704338+01:00");
//   * company numbers from a bounded pool shared by all streams of one seed,
//     so a company gets a creation, several changes and maybe a deletion;
//   * deleted events with and without data, non-ASCII names (CAFÉ ZÜRICH
//     LTD, Welsh "CYFYNGEDIG"), occasional ~100 KB events, optional Go HTML
//     escaping of <, > and &;
//   * timepoints that strictly increase, start at a realistic value, and
//     have occasional gaps; occasional duplicates (the same resource
//     re-emitted unchanged at a new timepoint).
//
// The output depends only on (kind, seed, options) and the sequence of
// `published_at` times passed to Next(): two generators built alike and fed
// the same times produce byte-identical lines.
//
// Thread-safety: an EventGenerator is not thread-safe; callers serialise
// access (the simulator holds its mutex).
//
//   EventGenerator gen(StreamKind::kCompanies, /*seed=*/7);
//   std::string line;
//   int64_t timepoint = gen.Next(absl::Now(), &line);
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"

namespace chstream::ingest::sim {

// The nine upstream streams, in the order of storage::kStreamNames.
enum class StreamKind : int {
  kCompanies = 0,
  kFilings,
  kOfficers,
  kPsc,
  kCharges,
  kInsolvency,
  kDisqualifiedOfficers,
  kExemptions,
  kPscStatements,
};
inline constexpr int kNumStreamKinds = 9;

// "companies", "filings", ... (the URL path without the leading slash).
std::string_view StreamName(StreamKind kind);
// The inverse of StreamName(); accepts the name with or without a leading
// slash. nullopt for anything else.
std::optional<StreamKind> StreamKindFromName(std::string_view name);
// A realistic first timepoint (e.g. 82,000,000 for companies).
int64_t DefaultFirstTimepoint(StreamKind kind);

enum class PublishedAtFormat {
  kPlainUtc,      // 2022-08-02T15:21:06          (UTC, no zone)
  kMicrosZ,       // 2022-11-15T18:59:02.333257Z
  kMicrosOffset,  // 2022-08-02T14:51:01.704338+01:00 (the same instant)
};

struct GeneratorOptions {
  // Probability that a timepoint skips ahead by 2..max_gap+1 instead of 1.
  double gap_probability = 0.02;
  int max_gap = 10;
  // Probability that an event re-emits a recent event's resource unchanged
  // (same resource_uri and data, new timepoint and published_at).
  double duplicate_probability = 0.03;
  // Probability that an event deletes an existing resource, and the share
  // of deleted events that carry no "data" key at all.
  double delete_probability = 0.02;
  double deleted_without_data_probability = 0.5;
  // Probability of a ~100 KB event (companies: a very long
  // previous_company_names list; charges: very long particulars).
  double large_event_probability = 0.001;
  // Share of companies (and people) whose names contain non-ASCII UTF-8.
  double non_ascii_probability = 0.05;
  // Escape <, > and & as \u003c, \u003e, \u0026, as Go's json.Marshal does.
  bool go_html_escape = false;
  // Companies stream only: every event is a full ~1.3 KB company-profile
  // "changed" event (no deletions, no large events), for throughput
  // benchmarks.
  bool profile_only = false;
  // How many distinct companies the streams draw from.
  int company_pool_size = 2000;
  // published_at styles to choose from (uniformly per event). Empty means
  // the stream's default: plain UTC, except charges (plain and ...Z mixed)
  // and insolvency-cases and disqualified-officers (+01:00).
  std::vector<PublishedAtFormat> published_at_formats;
  // 0 means DefaultFirstTimepoint(kind).
  int64_t first_timepoint = 0;
};

class EventGenerator {
 public:
  EventGenerator(StreamKind kind, uint64_t seed, GeneratorOptions options = {});
  ~EventGenerator();
  EventGenerator(const EventGenerator&) = delete;
  EventGenerator& operator=(const EventGenerator&) = delete;

  // Writes the next event, published at `published_at`, into *line
  // (replacing its contents; compact JSON, no trailing newline) and returns
  // its timepoint.
  int64_t Next(absl::Time published_at, std::string* line);

  // Makes the next event's timepoint at least `count` higher than it would
  // otherwise be (an explicit gap).
  void SkipTimepoints(int64_t count);

  // The timepoint of the last event generated, or first_timepoint - 1 before
  // the first.
  int64_t last_timepoint() const { return last_timepoint_; }
  StreamKind kind() const { return kind_; }

 private:
  struct State;

  StreamKind kind_;
  int64_t last_timepoint_;
  int64_t pending_skip_ = 0;
  std::unique_ptr<State> state_;
};

}  // namespace chstream::ingest::sim
