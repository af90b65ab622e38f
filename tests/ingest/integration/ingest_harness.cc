#include "tests/ingest/integration/ingest_harness.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <utility>
#include <variant>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "base/clock.h"
#include "base/log.h"
#include "ingest/event_parser.h"
#include "ingest/simulator/event_generator.h"
#include "tests/testing/slowdown.h"

namespace chstream::ingest::testing {

using ::chstream::testing::Scaled;

namespace {

// Debian's abseil has its own string_view type.
absl::string_view Av(std::string_view s) { return {s.data(), s.size()}; }

std::string TmpDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr && *dir != '\0' ? dir : "/tmp";
}

std::string CurrentTestName() {
  const ::testing::TestInfo* info =
      ::testing::UnitTest::GetInstance()->current_test_info();
  if (info == nullptr) return "no-test";
  return absl::StrReplaceAll(
      absl::StrCat(info->test_suite_name(), ".", info->name()), {{"/", "_"}});
}

std::string Describe(const storage::Event& e) {
  return absl::StrCat("{position ", e.position, ", timepoint ", e.timepoint,
                      ", ", e.resource_kind, " ", e.resource_uri, "}");
}

}  // namespace

ReconnectPolicy::Options FastPolicy() {
  ReconnectPolicy::Options p;
  p.auth_retry_interval = absl::Hours(1);
  p.on_timepoint_expired = TimepointExpiredAction::kResumeFromHead;
  p.error_backoff_initial = absl::Milliseconds(10);
  p.error_backoff_max = absl::Milliseconds(100);
  p.rate_limit_min = absl::Milliseconds(100);
  p.rate_limit_max = absl::Milliseconds(200);
  p.max_retry_after = absl::Hours(1);
  p.short_delay_min = absl::Milliseconds(5);
  p.short_delay_max = absl::Milliseconds(20);
  p.healthy_after = absl::Seconds(30);
  p.breaker_failures = 1000;
  p.breaker_cooldown = absl::Milliseconds(100);
  p.breaker_max_cooldown = absl::Milliseconds(400);
  return p;
}

sim::Options SimOptions(int64_t total, int64_t initial, double rate,
                        std::string_view stream) {
  sim::Options o;
  o.keys = {kKey};
  o.seed = 20240601;
  o.streams = {std::string(stream)};
  o.stream_rates[std::string(stream)] = rate;
  o.initial_events_per_stream = initial;
  o.max_events_per_stream = total;
  o.heartbeat_interval = absl::Milliseconds(25);
  o.retention_events = -1;
  o.retention_bytes = -1;
  // Plenty of the awkward cases: non-ASCII names (UTF-8 split across
  // chunks), ~100 KB events (lines across read buffers), Go's HTML escaping.
  o.generator.non_ascii_probability = 0.3;
  o.generator.large_event_probability = 0.01;
  o.generator.go_html_escape = true;
  return o;
}

IngesterOptions ClientOptions(const sim::Simulator& sim,
                              const std::vector<std::string>& streams) {
  IngesterOptions o;
  o.upstream_url = sim.url();
  o.keys = {kKey};
  o.streams = streams;
  // Scaled: under --config=tsan the in-process simulator could take over
  // 5 s to answer on a loaded machine ("no response headers within 5s").
  o.connect_timeout = Scaled(absl::Seconds(5));
  o.header_timeout = Scaled(absl::Seconds(5));
  o.idle_timeout = Scaled(absl::Seconds(5));
  o.policy = FastPolicy();
  // Tests reconnect far more often than the production cap of 10 a minute
  // (ConnectLimiter has its own tests).
  o.max_connects_per_minute = 100000;
  o.seed = 7;
  for (const std::string& stream : streams) {
    std::vector<sim::Simulator::LogEntry> log = sim.Log(stream);
    if (!log.empty()) {
      o.start_timepoints[stream] = log.front().timepoint;
    } else if (auto kind = sim::StreamKindFromName(stream)) {
      o.start_timepoints[stream] = sim::DefaultFirstTimepoint(*kind);
    }
  }
  return o;
}

std::string TestDbPath(std::string_view suffix) {
  static std::atomic<int> counter{0};
  return absl::StrCat(TmpDir(), "/", CurrentTestName(), Av(suffix), "-",
                      counter.fetch_add(1), ".db");
}

std::string WriteTestFile(std::string_view name, std::string_view contents) {
  static std::atomic<int> counter{0};
  const std::string path = absl::StrCat(TmpDir(), "/", CurrentTestName(), "-",
                                        counter.fetch_add(1), "-", Av(name));
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  return path;
}

bool WaitUntil(const std::function<bool()>& predicate, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!predicate()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));  // a poll, not a wait for an event
  }
  return true;
}

// ---------------------------------------------------------------------------
// Pipeline

storage::EventWriter::Options Pipeline::DefaultWriterOptions() {
  storage::EventWriter::Options o;
  o.queue_capacity = 4096;
  o.max_batch = 1024;
  o.max_delay = absl::Milliseconds(2);
  return o;
}

absl::StatusOr<std::unique_ptr<Pipeline>> Pipeline::Open(
    const std::string& path, storage::EventWriter::Options writer_options) {
  auto store = storage::Store::Open(path);
  if (!store.ok()) return store.status();
  std::unique_ptr<Pipeline> p(new Pipeline());
  p->store_ = *std::move(store);
  Pipeline* raw = p.get();
  p->writer_ = std::make_unique<storage::EventWriter>(
      p->store_.get(), writer_options,
      [raw](const storage::CommitResult& r) { raw->OnCommit(r); },
      Clock::Real());
  p->writer_->Start();
  p->sink_ = std::make_unique<WriterSink>(p->writer_.get());
  return p;
}

Pipeline::~Pipeline() { Close(); }

void Pipeline::OnCommit(const storage::CommitResult& result) {
  absl::MutexLock lock(&mu_);
  for (const storage::Event& e : *result.events) {
    auto [it, inserted] = committed_timepoints_.emplace(e.stream, e.timepoint);
    if (!inserted) it->second = std::max(it->second, e.timepoint);
  }
  committed_events_ += result.events->size();
  if (live_ingester_ != nullptr) live_ingester_->OnCommitted(result);
}

absl::Status Pipeline::StartIngester(IngesterOptions options) {
  if (store_ == nullptr) return absl::FailedPreconditionError("closed");
  absl::StatusOr<std::vector<storage::StreamState>> states =
      store_->LoadStreamStates();
  if (!states.ok()) return states.status();
  return StartIngester(std::move(options), *std::move(states));
}

absl::Status Pipeline::StartIngester(IngesterOptions options,
                                     std::vector<storage::StreamState> states) {
  if (ingester_ != nullptr) {
    return absl::FailedPreconditionError("an ingester is running");
  }
  if (sink_ == nullptr) return absl::FailedPreconditionError("closed");
  auto ingester = std::make_unique<Ingester>(std::move(options), sink_.get(),
                                             Clock::Real());
  {
    absl::MutexLock lock(&mu_);
    live_ingester_ = ingester.get();
  }
  absl::Status s = ingester->Start(states);
  if (!s.ok()) {
    absl::MutexLock lock(&mu_);
    live_ingester_ = nullptr;
    return s;
  }
  ingester_ = std::move(ingester);
  return absl::OkStatus();
}

void Pipeline::StopIngester() {
  if (ingester_ == nullptr) return;
  ingester_->Stop();
  writer_->Flush();
  std::vector<StreamStatusSnapshot> last = ingester_->Snapshot();
  {
    absl::MutexLock lock(&mu_);
    live_ingester_ = nullptr;
    final_status_ = std::move(last);
  }
  ingester_.reset();
}

void Pipeline::Close() {
  StopIngester();
  if (writer_ != nullptr) writer_->Stop();
  sink_.reset();
  writer_.reset();
  store_.reset();
}

StreamStatusSnapshot Pipeline::Status(std::string_view stream) const {
  absl::MutexLock lock(&mu_);
  std::vector<StreamStatusSnapshot> all =
      live_ingester_ != nullptr ? live_ingester_->Snapshot() : final_status_;
  for (StreamStatusSnapshot& s : all) {
    if (s.stream == stream) return std::move(s);
  }
  StreamStatusSnapshot none;
  none.stream = std::string(stream);
  return none;
}

bool Pipeline::WaitForStatus(
    std::string_view stream,
    const std::function<bool(const StreamStatusSnapshot&)>& predicate,
    absl::Duration timeout) const {
  return WaitUntil([&] { return predicate(Status(stream)); }, Scaled(timeout));
}

bool Pipeline::WaitForTimepoint(std::string_view stream, int64_t timepoint,
                                absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto reached = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    auto it = committed_timepoints_.find(stream);
    return it != committed_timepoints_.end() && it->second >= timepoint;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&reached), Scaled(timeout));
}

bool Pipeline::WaitForCommittedEvents(uint64_t events,
                                      absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto reached = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return committed_events_ >= events;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&reached), Scaled(timeout));
}

uint64_t Pipeline::committed_events() const {
  absl::MutexLock lock(&mu_);
  return committed_events_;
}

bool RunToCompletion(const sim::Simulator& sim, const Pipeline& pipeline,
                     std::string_view stream, int64_t total,
                     absl::Duration timeout) {
  const std::string name(stream);
  if (!sim.WaitFor(
          [&](const sim::Stats& s) {
            auto it = s.events_generated.find(name);
            return it != s.events_generated.end() && it->second >= total;
          },
          timeout)) {
    ADD_FAILURE() << "the simulator did not generate " << total << " " << stream
                  << " events";
    return false;
  }
  const std::vector<sim::Simulator::LogEntry> log = sim.Log(stream);
  if (log.empty()) {
    ADD_FAILURE() << "empty simulator log for " << stream;
    return false;
  }
  if (!pipeline.WaitForTimepoint(stream, log.back().timepoint, timeout)) {
    const StreamStatusSnapshot s = pipeline.Status(stream);
    ADD_FAILURE() << stream << ": timepoint " << log.back().timepoint
                  << " not committed; state " << StreamStateName(s.state)
                  << ", events_total " << s.events_total << ", last_error '"
                  << s.last_error << "'";
    return false;
  }
  if (!pipeline.WaitForStatus(
          stream,
          [](const StreamStatusSnapshot& s) { return s.heartbeats_total > 0; },
          timeout)) {
    ADD_FAILURE() << stream << ": no heartbeat counted";
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// Comparison

absl::StatusOr<std::vector<storage::Event>> ReadAllEvents(
    storage::Store& store) {
  std::vector<storage::Event> all;
  uint64_t after = 0;
  const uint64_t head = store.HeadPosition();
  while (after < head) {
    absl::StatusOr<storage::Page> page =
        store.ReadPage(after, head, storage::Filter{}, 1000, 10000);
    if (!page.ok()) return page.status();
    for (storage::Event& e : page->events) all.push_back(std::move(e));
    if (page->scanned_through <= after) {
      return absl::InternalError("ReadPage made no progress");
    }
    after = page->scanned_through;
  }
  return all;
}

std::vector<storage::Event> EventsOf(const std::vector<storage::Event>& all,
                                     std::string_view stream) {
  std::vector<storage::Event> out;
  for (const storage::Event& e : all) {
    if (e.stream == stream) out.push_back(e);
  }
  return out;
}

::testing::AssertionResult EventsMatchLog(
    const std::vector<storage::Event>& stored, std::string_view stream,
    const std::vector<sim::Simulator::LogEntry>& log) {
  std::vector<std::string> problems;
  auto problem = [&](std::string p) {
    if (problems.size() < 8) problems.push_back(std::move(p));
  };
  if (stored.size() != log.size()) {
    problem(absl::StrCat("stored ", stored.size(), " events of ", Av(stream),
                         ", the simulator generated ", log.size()));
  }
  EventParser parser;
  const size_t n = std::min(stored.size(), log.size());
  for (size_t i = 0; i < n; ++i) {
    const storage::Event& got = stored[i];
    const sim::Simulator::LogEntry& want = log[i];
    if (got.stream != stream) {
      problem(
          absl::StrCat("#", i, " ", Describe(got), ": stream ", got.stream));
    }
    if (got.timepoint != want.timepoint) {
      problem(absl::StrCat("#", i, " ", Describe(got), ": expected timepoint ",
                           want.timepoint));
      continue;
    }
    auto parsed = parser.Parse(stream, want.line, absl::UnixEpoch());
    if (auto* error = std::get_if<ParseError>(&parsed)) {
      problem(absl::StrCat(
          "#", i, ": the simulator's line does not parse: ", error->reason));
      continue;
    }
    const storage::Event& e = std::get<storage::Event>(parsed);
    auto check = [&](bool same, std::string_view field) {
      if (!same) {
        problem(absl::StrCat("#", i, " ", Describe(got), ": ", Av(field)));
      }
    };
    check(got.type == e.type, "type");
    check(got.resource_kind == e.resource_kind, "resource_kind");
    check(got.resource_id == e.resource_id, "resource_id");
    check(got.resource_uri == e.resource_uri, "resource_uri");
    check(got.company_number == e.company_number, "company_number");
    check(got.published_at == e.published_at,
          absl::StrCat("published_at ", absl::FormatTime(got.published_at),
                       " != ", absl::FormatTime(e.published_at)));
    check(got.fields_changed == e.fields_changed, "fields_changed");
    // The store keeps data_json only for events without data_pb (store.h).
    check(got.data_json == (e.data_pb.empty() ? e.data_json : ""),
          "data_json");
    check(got.data_pb == e.data_pb, "data_pb");
    if (!got.data_json.empty()) {
      check(want.line.find(absl::StrCat("\"data\":", got.data_json)) !=
                std::string::npos,
            "data_json is not the line's data object verbatim");
    }
  }
  if (problems.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << absl::StrJoin(problems, "\n");
}

::testing::AssertionResult PositionsAreDense(
    const std::vector<storage::Event>& all) {
  for (size_t i = 0; i < all.size(); ++i) {
    if (all[i].position != i + 1) {
      return ::testing::AssertionFailure()
             << "event #" << i << " has position " << all[i].position
             << ", expected " << i + 1 << " (" << Describe(all[i]) << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult StoreMatchesLog(
    storage::Store& store, std::string_view stream,
    const std::vector<sim::Simulator::LogEntry>& log) {
  absl::StatusOr<std::vector<storage::Event>> all = ReadAllEvents(store);
  if (!all.ok()) {
    return ::testing::AssertionFailure() << all.status().ToString();
  }
  if (::testing::AssertionResult r = PositionsAreDense(*all); !r) return r;
  if (store.HeadPosition() != all->size()) {
    return ::testing::AssertionFailure()
           << "head position " << store.HeadPosition() << " but " << all->size()
           << " events stored";
  }
  return EventsMatchLog(*all, stream, log);
}

// ---------------------------------------------------------------------------
// Logs

LogCapture::LogCapture() {
  log::SetSinkForTest([this](std::string_view line) {
    // Runs under the log's own mutex: no logging from here.
    std::string copy = absl::StrCat(Av(line), "\n");
    const char* p = copy.data();
    size_t left = copy.size();
    while (left > 0) {
      const ssize_t n = ::write(STDERR_FILENO, p, left);
      if (n <= 0) break;
      p += n;
      left -= static_cast<size_t>(n);
    }
    copy.pop_back();
    absl::MutexLock lock(&mu_);
    lines_.push_back({Clock::Real()->Now(), std::move(copy)});
  });
}

LogCapture::~LogCapture() { log::SetSinkForTest(nullptr); }

std::vector<LogCapture::Line> LogCapture::Lines() const {
  absl::MutexLock lock(&mu_);
  return lines_;
}

std::vector<LogCapture::Line> LogCapture::Find(std::string_view msg,
                                               std::string_view stream) const {
  std::vector<Line> out;
  for (Line& line : Lines()) {
    if (JsonStringField(line.json, "msg") == msg &&
        JsonStringField(line.json, "stream") == stream) {
      out.push_back(std::move(line));
    }
  }
  return out;
}

std::vector<std::string> LogCapture::Targets(std::string_view stream) const {
  std::vector<std::string> out;
  for (const Line& line : Find("connecting to upstream", stream)) {
    out.push_back(JsonStringField(line.json, "target"));
  }
  return out;
}

std::vector<absl::Time> LogCapture::AttemptTimes(
    std::string_view stream) const {
  std::vector<absl::Time> out;
  for (const Line& line : Find("connecting to upstream", stream)) {
    out.push_back(line.at);
  }
  return out;
}

std::string JsonStringField(std::string_view line, std::string_view key) {
  // Inside a JSON string every '"' is escaped, so `"key":"` can only match a
  // real key.
  const std::string pattern = absl::StrCat("\"", Av(key), "\":\"");
  size_t at = line.find(pattern);
  if (at == std::string_view::npos) return "";
  std::string out;
  for (size_t i = at + pattern.size(); i < line.size(); ++i) {
    const char c = line[i];
    if (c == '"') break;
    if (c != '\\' || i + 1 >= line.size()) {
      out.push_back(c);
      continue;
    }
    const char e = line[++i];
    switch (e) {
      case 'n':
        out.push_back('\n');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 'u': {
        uint32_t code = 0;
        if (i + 4 < line.size() &&
            absl::SimpleHexAtoi(Av(line.substr(i + 1, 4)), &code) &&
            code < 0x80) {
          out.push_back(static_cast<char>(code));
          i += 4;
        } else {
          out.append("\\u");
        }
        break;
      }
      default:
        out.push_back(e);  // \" \\ \/
    }
  }
  return out;
}

std::optional<double> JsonNumberField(std::string_view line,
                                      std::string_view key) {
  const std::string pattern = absl::StrCat("\"", Av(key), "\":");
  size_t at = line.find(pattern);
  if (at == std::string_view::npos) return std::nullopt;
  size_t start = at + pattern.size();
  size_t end = start;
  while (end < line.size() && line[end] != ',' && line[end] != '}') ++end;
  double value;
  if (!absl::SimpleAtod(Av(line.substr(start, end - start)), &value)) {
    return std::nullopt;
  }
  return value;
}

}  // namespace chstream::ingest::testing
