#include "server/ingest_pipeline.h"

#include <random>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/log.h"

namespace chstream::server {
namespace {

std::string RandomKey() {
  std::random_device rd;
  return absl::StrCat("sim-", rd(), rd());
}

}  // namespace

storage::EventWriter::Options WriterOptionsFrom(const Config& config) {
  storage::EventWriter::Options o;
  o.queue_capacity = static_cast<size_t>(config.writer_queue);
  o.queue_bytes = static_cast<size_t>(config.writer_queue_bytes);
  o.max_batch = static_cast<size_t>(config.batch_max_events);
  o.max_delay = config.batch_max_delay;
  return o;
}

ingest::IngesterOptions IngesterOptionsFrom(const Config& config,
                                            std::string upstream_url,
                                            std::vector<std::string> keys) {
  ingest::IngesterOptions o;
  o.upstream_url = std::move(upstream_url);
  o.keys = std::move(keys);
  o.streams = config.streams;
  o.ca_file = config.ca_file;
  o.max_connections_per_key = config.max_connections_per_key;
  o.max_connects_per_minute = config.max_connects_per_minute;
  o.start_timepoints = config.start_timepoints;
  o.idle_timeout = config.idle_timeout;
  o.max_line_bytes = static_cast<size_t>(config.max_line_bytes);
  o.policy.auth_retry_interval = config.auth_retry_interval;
  o.policy.on_timepoint_expired =
      config.on_timepoint_expired == OnTimepointExpired::kStop
          ? ingest::TimepointExpiredAction::kStop
          : ingest::TimepointExpiredAction::kResumeFromHead;
  o.policy.breaker_failures = config.breaker_failures;
  return o;
}

ingest::sim::Options SimulatorOptionsFrom(
    const Config& config, const std::vector<storage::StreamState>& states) {
  ingest::sim::Options o;
  o.keys = {RandomKey()};
  o.seed = std::random_device{}();
  o.companies_rate = config.simulator_rate;
  // The simulator's log starts afresh in every process.
  for (const storage::StreamState& st : states) {
    if (st.last_timepoint)
      o.first_timepoints[st.stream] = *st.last_timepoint + 1;
  }
  return o;
}

storage::RetentionPolicy RetentionPolicyFrom(const Config& config) {
  storage::RetentionPolicy p;
  p.events_for = config.retain_for;
  p.max_bytes = config.retain_bytes;
  p.dead_letters_for = config.retain_dead_letters_for;
  return p;
}

namespace {

absl::Status CannotStartIngestion(const absl::Status& s) {
  return absl::Status(s.code(),
                      absl::StrCat("cannot start ingestion: ", s.message()));
}

}  // namespace

absl::Status IngestPipeline::CheckSettings(const Config& config) {
  // The simulator's URL and key are made at start; nothing to check.
  if (config.UseSimulator()) return absl::OkStatus();
  absl::Status s = ingest::Ingester::CheckOptions(
      IngesterOptionsFrom(config, config.upstream_url, config.api_keys));
  return s.ok() ? s : CannotStartIngestion(s);
}

absl::StatusOr<std::unique_ptr<IngestPipeline>> IngestPipeline::Start(
    const Config& config, storage::EventStore* store, SubscriptionHub* hub,
    const std::vector<storage::StreamState>& states, Clock* clock,
    int* exit_code) {
  std::unique_ptr<IngestPipeline> p(new IngestPipeline());
  int code = 1;
  absl::Status status = [&]() -> absl::Status {
    // The simulator, when there is no key (or --simulate).
    std::string upstream_url = config.upstream_url;
    std::vector<std::string> keys = config.api_keys;
    if (config.UseSimulator()) {
      ingest::sim::Options so = SimulatorOptionsFrom(config, states);
      absl::StatusOr<std::unique_ptr<ingest::sim::Simulator>> sim =
          ingest::sim::Simulator::Start(so);
      if (!sim.ok()) {
        return absl::Status(sim.status().code(),
                            absl::StrCat("cannot start the simulator: ",
                                         sim.status().message()));
      }
      p->simulator_ = *std::move(sim);
      upstream_url = p->simulator_->url();
      keys = so.keys;
      log::AddSecret(so.keys[0]);
      log::Info(config.api_keys.empty()
                    ? "no CH_STREAMING_API_KEY set: following the built-in "
                      "simulator of the Companies House stream"
                    : "--simulate: following the built-in simulator",
                {{"url", upstream_url},
                 {"companies_events_per_second", config.simulator_rate}});
    }

    // The single writer: commits, then publishes to subscribers.
    IngestPipeline* self = p.get();
    p->writer_ = std::make_unique<storage::EventWriter>(
        store, WriterOptionsFrom(config),
        [self, hub](const storage::CommitResult& result) {
          hub->Publish(result.events);
          if (ingest::Ingester* ingester = self->live_ingester_.load()) {
            ingester->OnCommitted(result);
          }
        },
        clock);
    p->writer_->Start();

    p->retainer_ = std::make_unique<storage::Retainer>(
        store,
        storage::Retainer::Options{.policy = RetentionPolicyFrom(config)},
        clock);
    p->retainer_->Start();

    p->sink_ = std::make_unique<ingest::WriterSink>(p->writer_.get());
    p->ingester_ = std::make_unique<ingest::Ingester>(
        IngesterOptionsFrom(config, upstream_url, keys), p->sink_.get(), clock);
    if (absl::Status s = p->ingester_->Start(states); !s.ok()) {
      code = 2;
      return CannotStartIngestion(s);
    }
    p->live_ingester_.store(p->ingester_.get());
    return absl::OkStatus();
  }();
  if (!status.ok()) {
    p->Stop();
    if (exit_code != nullptr) *exit_code = code;
    return status;
  }
  return p;
}

IngestPipeline::~IngestPipeline() { Stop(); }

void IngestPipeline::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (retainer_ != nullptr) retainer_->Stop();
  // Stop reading the upstream, then commit what was read. The writer stops
  // accepting first: an ingest thread blocked on a full queue (storage
  // failing) returns at once, so the ingester can be joined. What it read
  // and could not queue was not committed: the upstream sends it again
  // after a restart (or to the next leader).
  if (writer_ != nullptr) writer_->StopAccepting();
  if (ingester_ != nullptr) ingester_->Stop();
  live_ingester_.store(nullptr);
  if (writer_ != nullptr) writer_->Stop();
  if (simulator_ != nullptr) simulator_->Stop();
}

std::vector<ingest::StreamStatusSnapshot> IngestPipeline::Snapshots() const {
  ingest::Ingester* ingester = live_ingester_.load();
  return ingester != nullptr ? ingester->Snapshot()
                             : std::vector<ingest::StreamStatusSnapshot>{};
}

}  // namespace chstream::server
