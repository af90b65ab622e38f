// File: server/metrics.h
//
// A small Prometheus metrics registry and its text exposition format
// (version 0.0.4), for the /metrics endpoint of the operations listener.
//
// Two kinds of metrics:
//  - Registered metrics (Counter, Gauge, Histogram): created once with a
//    fixed label set, then updated on hot paths with relaxed atomics only
//    (no locks, no allocation). The registry owns them; references stay
//    valid for the registry's lifetime.
//  - Collect-time callbacks (AddCollector): run on every Render() to turn a
//    snapshot (ingest streams, writer stats, subscribers, /proc/self) into
//    samples, so that values already kept elsewhere are not mirrored.
//
// Render() groups samples by family (one HELP and TYPE line each), orders
// families by name and series by label values, so the output is
// deterministic. Label values and HELP text are escaped as the format
// requires.
//
// Naming (Prometheus conventions, checked at registration): metric and label
// names match [a-zA-Z_:][a-zA-Z0-9_:]* / [a-zA-Z_][a-zA-Z0-9_]* (no leading
// "__"); counters end in "_total"; histograms may not use the label "le".
// Use base units (_seconds, _bytes) and the "chstream_" prefix.
//
// Thread-safety: everything is thread-safe. Counter/Gauge/Histogram updates
// are lock-free; Add* and Render take the registry's mutex (collectors run
// outside it, so a collector may take its own locks but must not block for
// long: it delays the scrape).
//
//   MetricsRegistry registry;
//   Counter& events = registry.AddCounter("chstream_events_total",
//                                         "Events ingested.",
//                                         {{"stream", "companies"}});
//   events.Increment();
//   registry.AddCollector([&hub](Collection& out) {
//     out.AddGauge("chstream_subscribers", "Connected subscribers.", {},
//                  hub.size());
//   });
//   std::string body = registry.Render();  // Content-Type: kContentType
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace chstream::server {

// The Content-Type of Render()'s output.
inline constexpr char kMetricsContentType[] =
    "text/plain; version=0.0.4; charset=utf-8";

// Label name/value pairs, in the order they are rendered.
using Labels = std::vector<std::pair<std::string, std::string>>;

enum class MetricType { kCounter, kGauge, kHistogram };

// "counter", "gauge", "histogram".
std::string_view MetricTypeName(MetricType type);

// A monotonically increasing integer count.
class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  void Increment(uint64_t n = 1) {
    value_.fetch_add(n, std::memory_order_relaxed);
  }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double d) { value_.fetch_add(d, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Histogram data in the registry's (and EventWriter::Stats') layout:
// `counts` is NON-cumulative with bounds.size() + 1 entries, the last one
// counting values above every bound (+Inf). Render() makes the buckets
// cumulative and derives _count from the buckets, so +Inf == _count always.
struct HistogramData {
  std::vector<double> bounds;  // strictly increasing, finite
  std::vector<uint64_t> counts;
  double sum = 0;
};

// Fixed-bucket histogram: one atomic count per bucket and an atomic sum.
class Histogram {
 public:
  // REQUIRES: `bounds` strictly increasing and finite (the registry checks).
  explicit Histogram(std::vector<double> bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // A value v lands in the first bucket whose bound is >= v (Prometheus
  // "le" semantics); NaN is ignored.
  void Observe(double v);
  void ObserveDuration(absl::Duration d) { Observe(absl::ToDoubleSeconds(d)); }

  HistogramData Snapshot() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  const std::vector<double> bounds_;
  const std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_ + 1
  std::atomic<double> sum_{0};
};

// `count` bounds: start, start*factor, ... REQUIRES start > 0, factor > 1.
std::vector<double> ExponentialBuckets(double start, double factor,
                                       size_t count);
// Latency buckets from 1 ms to 60 s, for request and commit durations.
std::vector<double> DefaultDurationBuckets();

// Validation used by the registry (exposed for tests and collectors).
bool IsValidMetricName(std::string_view name);
bool IsValidLabelName(std::string_view name);

// Formats a sample value as the text format expects: shortest round-trip
// decimal ("1", "0.25", "1e+20"), "+Inf", "-Inf" or "NaN".
std::string FormatMetricValue(double v);
// Escapes a label value (backslash, double quote, newline).
std::string EscapeLabelValue(std::string_view v);
// Escapes HELP text (backslash, newline).
std::string EscapeHelp(std::string_view v);

// The samples one collector produces during one Render(). A sample whose
// name, labels, type or help conflict with what the family already has, or
// which repeats a label set, is dropped (and logged once per family).
class Collection {
 public:
  void AddCounter(std::string_view name, std::string_view help,
                  const Labels& labels, double value);
  void AddGauge(std::string_view name, std::string_view help,
                const Labels& labels, double value);
  void AddHistogram(std::string_view name, std::string_view help,
                    const Labels& labels, const HistogramData& data);

 private:
  friend class MetricsRegistry;
  struct Sample {
    MetricType type;
    std::string name;
    std::string help;
    Labels labels;
    double value = 0;
    HistogramData histogram;
  };
  std::vector<Sample> samples_;
};

class MetricsRegistry {
 public:
  using CollectFn = std::function<void(Collection&)>;

  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Registers (or, for the same name, type, help and labels, returns the
  // existing) metric. The label names of every series of a family must be
  // the same, in the same order.
  // REQUIRES: valid names (see the file comment), the same help and type for
  // every series of a family, and for histograms the same bounds, strictly
  // increasing and finite. A violation is a programming error: it is logged
  // and the process aborts (registration happens at start-up).
  Counter& AddCounter(std::string_view name, std::string_view help,
                      Labels labels = {});
  Gauge& AddGauge(std::string_view name, std::string_view help,
                  Labels labels = {});
  Histogram& AddHistogram(std::string_view name, std::string_view help,
                          std::vector<double> bounds, Labels labels = {});

  // Runs `collect` on every Render(), outside the registry's lock, in
  // registration order.
  void AddCollector(CollectFn collect);

  // The text exposition format 0.0.4 of every metric, ending with "\n"
  // (empty when there is nothing to show).
  std::string Render() const;

 private:
  struct Series {
    Labels labels;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
  };
  struct Family {
    MetricType type;
    std::string help;
    std::vector<std::string> label_names;
    std::vector<double> bounds;  // histograms
    std::vector<std::unique_ptr<Series>> series;
  };

  Series& FindOrAdd(MetricType type, std::string_view name,
                    std::string_view help, Labels labels,
                    const std::vector<double>* bounds);

  // Logs why a collected sample was dropped, once per family name.
  void WarnDropped(const std::string& name, std::string_view reason) const;

  mutable absl::Mutex mu_;
  std::map<std::string, Family, std::less<>> families_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<const CollectFn>> collectors_
      ABSL_GUARDED_BY(mu_);

  mutable absl::Mutex warn_mu_;
  mutable std::set<std::string, std::less<>> warned_ ABSL_GUARDED_BY(warn_mu_);
};

// What /proc says about this process.
struct ProcessStats {
  double cpu_seconds = 0;  // user + system
  uint64_t resident_memory_bytes = 0;
  uint64_t virtual_memory_bytes = 0;
  double start_time_seconds = 0;  // since the Unix epoch
  uint64_t threads = 0;
  uint64_t open_fds = 0;
  uint64_t max_fds = 0;  // soft limit; 0 when unlimited or unknown
};

// Reads <proc_root>/self/stat, <proc_root>/stat (btime),
// <proc_root>/self/fd and <proc_root>/self/limits.
absl::StatusOr<ProcessStats> ReadProcessStats(
    const std::string& proc_root = "/proc");

// Adds a collector exporting chstream_process_cpu_seconds_total,
// chstream_process_resident_memory_bytes,
// chstream_process_virtual_memory_bytes, chstream_process_start_time_seconds,
// chstream_process_threads, chstream_process_open_fds and
// chstream_process_max_fds, read from `proc_root` at each scrape (nothing is
// exported for a scrape where /proc cannot be read).
void RegisterProcessMetrics(MetricsRegistry& registry,
                            const std::string& proc_root = "/proc");

}  // namespace chstream::server
