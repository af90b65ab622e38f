#include "server/metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "base/log.h"

namespace chstream::server {
namespace {

constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53

// Debian's absl::string_view is not std::string_view.
absl::string_view Sv(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

// Registration errors are programming errors found at start-up.
[[noreturn]] void RegistrationError(std::string_view name,
                                    std::string_view error) {
  log::Error("invalid metric registration",
             {{"metric", name}, {"error", error}});
  std::abort();
}

bool HasUniqueNames(const Labels& labels) {
  for (size_t i = 0; i < labels.size(); ++i) {
    for (size_t j = i + 1; j < labels.size(); ++j) {
      if (labels[i].first == labels[j].first) return false;
    }
  }
  return true;
}

// Checks a family name and its labels; returns an empty string when valid,
// else the reason.
std::string CheckNames(MetricType type, std::string_view name,
                       const Labels& labels) {
  if (!IsValidMetricName(name)) return "invalid metric name";
  if (type == MetricType::kCounter && !absl::EndsWith(Sv(name), "_total")) {
    return "counter names must end in _total";
  }
  for (const auto& [label, value] : labels) {
    if (!IsValidLabelName(label))
      return absl::StrCat("invalid label name ", label);
    if (type == MetricType::kHistogram && label == "le") {
      return "histograms cannot have a label named le";
    }
  }
  if (!HasUniqueNames(labels)) return "repeated label name";
  return "";
}

std::string CheckBounds(const std::vector<double>& bounds) {
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) return "bucket bounds must be finite";
    if (i > 0 && !(bounds[i - 1] < bounds[i])) {
      return "bucket bounds must be strictly increasing";
    }
  }
  return "";
}

std::vector<std::string> LabelNames(const Labels& labels) {
  std::vector<std::string> names;
  names.reserve(labels.size());
  for (const auto& [name, value] : labels) names.push_back(name);
  return names;
}

// `{a="x",b="y"}` (with `le` appended when given), or "" without labels.
std::string RenderLabels(const Labels& labels,
                         const std::string* le = nullptr) {
  if (labels.empty() && le == nullptr) return "";
  std::string out = "{";
  bool first = true;
  for (const auto& [name, value] : labels) {
    if (!first) out += ',';
    first = false;
    absl::StrAppend(&out, name, "=\"", EscapeLabelValue(value), "\"");
  }
  if (le != nullptr) {
    if (!first) out += ',';
    absl::StrAppend(&out, "le=\"", *le, "\"");
  }
  out += '}';
  return out;
}

std::string RenderHistogramLines(std::string_view name, const Labels& labels,
                                 const HistogramData& data) {
  std::string out;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < data.bounds.size(); ++i) {
    cumulative += i < data.counts.size() ? data.counts[i] : 0;
    const std::string le = FormatMetricValue(data.bounds[i]);
    absl::StrAppend(&out, Sv(name), "_bucket", RenderLabels(labels, &le), " ",
                    FormatMetricValue(static_cast<double>(cumulative)), "\n");
  }
  if (data.counts.size() > data.bounds.size()) {
    cumulative += data.counts[data.bounds.size()];
  }
  const std::string inf = "+Inf";
  const std::string count = FormatMetricValue(static_cast<double>(cumulative));
  const std::string plain = RenderLabels(labels);
  absl::StrAppend(&out, Sv(name), "_bucket", RenderLabels(labels, &inf), " ",
                  count, "\n");
  absl::StrAppend(&out, Sv(name), "_sum", plain, " ",
                  FormatMetricValue(data.sum), "\n");
  absl::StrAppend(&out, Sv(name), "_count", plain, " ", count, "\n");
  return out;
}

// One family as rendered: series keyed (and so ordered) by their labels.
struct OutFamily {
  MetricType type;
  std::string help;
  std::vector<std::string> label_names;
  std::map<std::string, std::string> series;  // rendered labels -> lines
};

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

}  // namespace

std::string_view MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// ---------------------------------------------------------------------------
// Histogram

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    counts_[i].store(0, std::memory_order_relaxed);
  }
}

void Histogram::Observe(double v) {
  if (std::isnan(v)) return;
  const size_t i = static_cast<size_t>(
      std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

HistogramData Histogram::Snapshot() const {
  HistogramData data;
  data.bounds = bounds_;
  data.counts.resize(bounds_.size() + 1);
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    data.counts[i] = counts_[i].load(std::memory_order_relaxed);
  }
  data.sum = sum_.load(std::memory_order_relaxed);
  return data;
}

std::vector<double> ExponentialBuckets(double start, double factor,
                                       size_t count) {
  std::vector<double> out;
  out.reserve(count);
  double v = start;
  for (size_t i = 0; i < count; ++i) {
    out.push_back(v);
    v *= factor;
  }
  return out;
}

std::vector<double> DefaultDurationBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
          0.5,   1,      2.5,   5,    10,    30,   60};
}

// ---------------------------------------------------------------------------
// Names and formatting

bool IsValidMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok =
        absl::ascii_isalpha(static_cast<unsigned char>(c)) || c == '_' ||
        c == ':' ||
        (i > 0 && absl::ascii_isdigit(static_cast<unsigned char>(c)));
    if (!ok) return false;
  }
  return true;
}

bool IsValidLabelName(std::string_view name) {
  if (name.empty() || absl::StartsWith(Sv(name), "__")) {
    return false;
  }
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok =
        absl::ascii_isalpha(static_cast<unsigned char>(c)) || c == '_' ||
        (i > 0 && absl::ascii_isdigit(static_cast<unsigned char>(c)));
    if (!ok) return false;
  }
  return true;
}

std::string FormatMetricValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::trunc(v) && std::fabs(v) <= kMaxExactInteger) {
    return absl::StrCat(static_cast<int64_t>(v));
  }
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  if (ec != std::errc()) return absl::StrCat(v);
  return std::string(buf, end);
}

std::string EscapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string EscapeHelp(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Collection

void Collection::AddCounter(std::string_view name, std::string_view help,
                            const Labels& labels, double value) {
  samples_.push_back({MetricType::kCounter,
                      std::string(name),
                      std::string(help),
                      labels,
                      value,
                      {}});
}

void Collection::AddGauge(std::string_view name, std::string_view help,
                          const Labels& labels, double value) {
  samples_.push_back({MetricType::kGauge,
                      std::string(name),
                      std::string(help),
                      labels,
                      value,
                      {}});
}

void Collection::AddHistogram(std::string_view name, std::string_view help,
                              const Labels& labels, const HistogramData& data) {
  samples_.push_back({MetricType::kHistogram, std::string(name),
                      std::string(help), labels, 0, data});
}

// ---------------------------------------------------------------------------
// MetricsRegistry

MetricsRegistry::Series& MetricsRegistry::FindOrAdd(
    MetricType type, std::string_view name, std::string_view help,
    Labels labels, const std::vector<double>* bounds) {
  if (std::string error = CheckNames(type, name, labels); !error.empty()) {
    RegistrationError(name, error);
  }
  if (bounds != nullptr) {
    if (std::string error = CheckBounds(*bounds); !error.empty()) {
      RegistrationError(name, error);
    }
  }
  absl::MutexLock lock(&mu_);
  auto it = families_.find(name);
  if (it == families_.end()) {
    Family family;
    family.type = type;
    family.help = std::string(help);
    family.label_names = LabelNames(labels);
    if (bounds != nullptr) family.bounds = *bounds;
    it = families_.emplace(std::string(name), std::move(family)).first;
  }
  Family& family = it->second;
  if (family.type != type)
    RegistrationError(name, "registered with another type");
  if (family.help != help)
    RegistrationError(name, "registered with another help");
  if (family.label_names != LabelNames(labels)) {
    RegistrationError(name, "registered with other label names");
  }
  if (bounds != nullptr && family.bounds != *bounds) {
    RegistrationError(name, "registered with other bucket bounds");
  }
  for (const std::unique_ptr<Series>& s : family.series) {
    if (s->labels == labels) return *s;
  }
  auto series = std::make_unique<Series>();
  series->labels = std::move(labels);
  switch (type) {
    case MetricType::kCounter:
      series->counter = std::make_unique<Counter>();
      break;
    case MetricType::kGauge:
      series->gauge = std::make_unique<Gauge>();
      break;
    case MetricType::kHistogram:
      series->histogram = std::make_unique<Histogram>(*bounds);
      break;
  }
  family.series.push_back(std::move(series));
  return *family.series.back();
}

Counter& MetricsRegistry::AddCounter(std::string_view name,
                                     std::string_view help, Labels labels) {
  return *FindOrAdd(MetricType::kCounter, name, help, std::move(labels),
                    nullptr)
              .counter;
}

Gauge& MetricsRegistry::AddGauge(std::string_view name, std::string_view help,
                                 Labels labels) {
  return *FindOrAdd(MetricType::kGauge, name, help, std::move(labels), nullptr)
              .gauge;
}

Histogram& MetricsRegistry::AddHistogram(std::string_view name,
                                         std::string_view help,
                                         std::vector<double> bounds,
                                         Labels labels) {
  return *FindOrAdd(MetricType::kHistogram, name, help, std::move(labels),
                    &bounds)
              .histogram;
}

void MetricsRegistry::AddCollector(CollectFn collect) {
  auto fn = std::make_shared<const CollectFn>(std::move(collect));
  absl::MutexLock lock(&mu_);
  collectors_.push_back(std::move(fn));
}

void MetricsRegistry::WarnDropped(const std::string& name,
                                  std::string_view reason) const {
  {
    absl::MutexLock lock(&warn_mu_);
    if (!warned_.insert(name).second) return;
  }
  log::Warning("metrics: dropped a collected sample (reported once per metric)",
               {{"metric", name}, {"reason", reason}});
}

std::string MetricsRegistry::Render() const {
  std::map<std::string, OutFamily> out;
  std::vector<std::shared_ptr<const CollectFn>> collectors;
  {
    absl::MutexLock lock(&mu_);
    collectors = collectors_;
    for (const auto& [name, family] : families_) {
      OutFamily& f = out[name];
      f.type = family.type;
      f.help = family.help;
      f.label_names = family.label_names;
      for (const std::unique_ptr<Series>& s : family.series) {
        std::string lines;
        switch (family.type) {
          case MetricType::kCounter:
            lines = absl::StrCat(
                name, RenderLabels(s->labels), " ",
                FormatMetricValue(static_cast<double>(s->counter->value())),
                "\n");
            break;
          case MetricType::kGauge:
            lines = absl::StrCat(name, RenderLabels(s->labels), " ",
                                 FormatMetricValue(s->gauge->value()), "\n");
            break;
          case MetricType::kHistogram:
            lines =
                RenderHistogramLines(name, s->labels, s->histogram->Snapshot());
            break;
        }
        f.series.emplace(RenderLabels(s->labels), std::move(lines));
      }
    }
  }

  // Collectors run without the lock: they may be slow or take other locks.
  for (const auto& collect : collectors) {
    Collection collection;
    (*collect)(collection);
    for (Collection::Sample& sample : collection.samples_) {
      if (std::string error =
              CheckNames(sample.type, sample.name, sample.labels);
          !error.empty()) {
        WarnDropped(sample.name, error);
        continue;
      }
      if (sample.type == MetricType::kHistogram) {
        std::string error = CheckBounds(sample.histogram.bounds);
        if (error.empty() && sample.histogram.counts.size() !=
                                 sample.histogram.bounds.size() + 1) {
          error = "histogram counts must have one entry per bound plus +Inf";
        }
        if (!error.empty()) {
          WarnDropped(sample.name, error);
          continue;
        }
      }
      auto [it, inserted] = out.try_emplace(sample.name);
      OutFamily& f = it->second;
      if (inserted) {
        f.type = sample.type;
        f.help = sample.help;
        f.label_names = LabelNames(sample.labels);
      } else if (f.type != sample.type || f.help != sample.help) {
        WarnDropped(sample.name, "type or help differs from the family's");
        continue;
      } else if (f.label_names != LabelNames(sample.labels)) {
        WarnDropped(sample.name, "label names differ from the family's");
        continue;
      }
      std::string key = RenderLabels(sample.labels);
      if (f.series.count(key) > 0) {
        WarnDropped(sample.name, "repeated label set");
        continue;
      }
      std::string lines =
          sample.type == MetricType::kHistogram
              ? RenderHistogramLines(sample.name, sample.labels,
                                     sample.histogram)
              : absl::StrCat(sample.name, key, " ",
                             FormatMetricValue(sample.value), "\n");
      f.series.emplace(std::move(key), std::move(lines));
    }
  }

  std::string text;
  for (const auto& [name, f] : out) {
    if (f.series.empty()) continue;
    absl::StrAppend(&text, "# HELP ", name, " ", EscapeHelp(f.help), "\n",
                    "# TYPE ", name, " ", Sv(MetricTypeName(f.type)), "\n");
    for (const auto& [key, lines] : f.series) text += lines;
  }
  return text;
}

// ---------------------------------------------------------------------------
// Process metrics

absl::StatusOr<ProcessStats> ReadProcessStats(const std::string& proc_root) {
  ProcessStats stats;
  const long ticks = sysconf(_SC_CLK_TCK);
  const long page = sysconf(_SC_PAGESIZE);
  if (ticks <= 0 || page <= 0) return absl::InternalError("sysconf failed");

  // <proc_root>/self/stat: "pid (comm) state ppid ...": comm may contain
  // spaces and parentheses, so fields are counted after the last ')'.
  std::string stat;
  if (!ReadFile(proc_root + "/self/stat", &stat)) {
    return absl::UnavailableError(
        absl::StrCat("cannot read ", proc_root, "/self/stat"));
  }
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) {
    return absl::DataLossError("malformed /proc/self/stat");
  }
  std::vector<absl::string_view> fields = absl::StrSplit(
      absl::string_view(stat).substr(paren + 1), ' ', absl::SkipWhitespace());
  // fields[0] is field 3 (state) of proc(5); field n is fields[n - 3].
  auto field = [&fields](size_t n, uint64_t* out) {
    return n >= 3 && n - 3 < fields.size() &&
           absl::SimpleAtoi(absl::StripAsciiWhitespace(fields[n - 3]), out);
  };
  uint64_t utime, stime, threads, starttime, vsize, rss;
  if (!field(14, &utime) || !field(15, &stime) || !field(20, &threads) ||
      !field(22, &starttime) || !field(23, &vsize) || !field(24, &rss)) {
    return absl::DataLossError("malformed /proc/self/stat");
  }
  stats.cpu_seconds =
      static_cast<double>(utime + stime) / static_cast<double>(ticks);
  stats.threads = threads;
  stats.virtual_memory_bytes = vsize;
  stats.resident_memory_bytes = rss * static_cast<uint64_t>(page);

  // Boot time, to turn starttime (ticks since boot) into Unix time.
  std::string proc_stat;
  if (!ReadFile(proc_root + "/stat", &proc_stat)) {
    return absl::UnavailableError(
        absl::StrCat("cannot read ", proc_root, "/stat"));
  }
  bool have_btime = false;
  for (absl::string_view line : absl::StrSplit(proc_stat, '\n')) {
    if (absl::ConsumePrefix(&line, "btime ")) {
      uint64_t btime;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &btime)) {
        stats.start_time_seconds =
            static_cast<double>(btime) +
            static_cast<double>(starttime) / static_cast<double>(ticks);
        have_btime = true;
      }
      break;
    }
  }
  if (!have_btime) return absl::DataLossError("no btime in /proc/stat");

  // Open descriptors (this count includes the one opendir uses).
  DIR* dir = opendir((proc_root + "/self/fd").c_str());
  if (dir == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot list ", proc_root, "/self/fd"));
  }
  while (const dirent* entry = readdir(dir)) {
    const std::string_view n = entry->d_name;
    if (n != "." && n != "..") ++stats.open_fds;
  }
  closedir(dir);

  // "Max open files            1024                 524288               files"
  std::string limits;
  if (ReadFile(proc_root + "/self/limits", &limits)) {
    for (absl::string_view line : absl::StrSplit(limits, '\n')) {
      if (!absl::ConsumePrefix(&line, "Max open files")) continue;
      std::vector<absl::string_view> parts =
          absl::StrSplit(line, ' ', absl::SkipWhitespace());
      uint64_t soft;
      if (!parts.empty() && absl::SimpleAtoi(parts[0], &soft)) {
        stats.max_fds = soft;
      }
      break;
    }
  }
  return stats;
}

void RegisterProcessMetrics(MetricsRegistry& registry,
                            const std::string& proc_root) {
  registry.AddCollector([proc_root](Collection& out) {
    absl::StatusOr<ProcessStats> stats = ReadProcessStats(proc_root);
    if (!stats.ok()) {
      log::Debug("metrics: cannot read process stats",
                 {{"error", stats.status()}});
      return;
    }
    out.AddCounter("chstream_process_cpu_seconds_total",
                   "User and system CPU time spent, in seconds.", {},
                   stats->cpu_seconds);
    out.AddGauge("chstream_process_resident_memory_bytes",
                 "Resident memory size, in bytes.", {},
                 static_cast<double>(stats->resident_memory_bytes));
    out.AddGauge("chstream_process_virtual_memory_bytes",
                 "Virtual memory size, in bytes.", {},
                 static_cast<double>(stats->virtual_memory_bytes));
    out.AddGauge("chstream_process_start_time_seconds",
                 "Start time of the process since the Unix epoch, in seconds.",
                 {}, stats->start_time_seconds);
    out.AddGauge("chstream_process_threads", "Threads in the process.", {},
                 static_cast<double>(stats->threads));
    out.AddGauge("chstream_process_open_fds", "Open file descriptors.", {},
                 static_cast<double>(stats->open_fds));
    if (stats->max_fds > 0) {
      out.AddGauge("chstream_process_max_fds",
                   "Maximum number of open file descriptors (soft limit).", {},
                   static_cast<double>(stats->max_fds));
    }
  });
}

}  // namespace chstream::server
