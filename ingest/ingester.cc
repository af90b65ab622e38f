#include "ingest/ingester.h"

#include <memory>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/thread_name.h"

namespace chstream::ingest {

namespace ssl = boost::asio::ssl;

namespace {

// Every check on `options` that Start() makes before it connects; the TLS
// context (nullptr for http://) into `*ssl_out`.
absl::StatusOr<UpstreamUrl> CheckAndMakeTls(
    const IngesterOptions& options, std::unique_ptr<ssl::context>* ssl_out) {
  absl::StatusOr<UpstreamUrl> url = ParseUpstreamUrl(options.upstream_url);
  if (!url.ok()) return url.status();
  if (options.keys.empty()) {
    return absl::InvalidArgumentError("no upstream key");
  }
  const size_t capacity = options.keys.size() *
                          static_cast<size_t>(options.max_connections_per_key);
  if (options.streams.size() > capacity) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.streams.size(), " streams need more connections than ",
        options.keys.size(), " key(s) x ", options.max_connections_per_key,
        " per key allow"));
  }
  if (url->tls) {
    auto ssl = std::make_unique<ssl::context>(ssl::context::tls_client);
    ssl->set_options(ssl::context::default_workarounds |
                     ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                     ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    boost::system::error_code ec;
    ssl->set_default_verify_paths(ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot load the system CA store: ", ec.message()));
    }
    if (!options.ca_file.empty()) {
      ssl->load_verify_file(options.ca_file, ec);
      if (ec) {
        return absl::InvalidArgumentError(absl::StrCat(
            "invalid --ca_file ", options.ca_file, ": ", ec.message()));
      }
    }
    ssl->set_verify_mode(ssl::verify_peer);
    *ssl_out = std::move(ssl);
  }
  return url;
}

}  // namespace

absl::Status Ingester::CheckOptions(const IngesterOptions& options) {
  std::unique_ptr<ssl::context> unused;
  return CheckAndMakeTls(options, &unused).status();
}

Ingester::Ingester(IngesterOptions options, EventSink* sink, Clock* clock)
    : options_(std::move(options)),
      sink_(sink),
      clock_(clock),
      rng_(options_.seed != 0 ? options_.seed : std::random_device{}()) {}

Ingester::~Ingester() { Stop(); }

absl::Status Ingester::Start(const std::vector<storage::StreamState>& states) {
  absl::StatusOr<UpstreamUrl> url = CheckAndMakeTls(options_, &ssl_);
  if (!url.ok()) return url.status();

  absl::flat_hash_map<std::string, int64_t> committed;
  for (const storage::StreamState& s : states) {
    if (s.last_timepoint) committed[s.stream] = *s.last_timepoint;
  }
  for (size_t k = 0; k < options_.keys.size(); ++k) {
    limiters_.push_back(std::make_unique<ConnectLimiter>(
        options_.max_connects_per_minute, clock_));
  }
  for (size_t i = 0; i < options_.streams.size(); ++i) {
    const std::string& stream = options_.streams[i];
    StreamClientOptions o;
    o.stream = stream;
    o.upstream = *url;
    o.key = options_.keys[i % options_.keys.size()];
    o.limiter = limiters_[i % options_.keys.size()].get();
    o.connect_timeout = options_.connect_timeout;
    o.header_timeout = options_.header_timeout;
    o.idle_timeout = options_.idle_timeout;
    o.max_line_bytes = options_.max_line_bytes;
    if (auto it = committed.find(stream); it != committed.end()) {
      o.committed_timepoint = it->second;
    }
    if (auto it = options_.start_timepoints.find(stream);
        it != options_.start_timepoints.end()) {
      o.start_timepoint = it->second;
    }
    o.policy = options_.policy;
    const uint64_t seed = rng_();
    auto rng = std::make_shared<std::mt19937_64>(seed);
    clients_.push_back(std::make_unique<StreamClient>(
        io_, ssl_.get(), std::move(o), sink_, clock_, [rng] {
          return std::uniform_real_distribution<double>(0.0, 1.0)(*rng);
        }));
  }
  work_.emplace(io_.get_executor());
  thread_ = std::thread([this] {
    SetCurrentThreadName("chs-ingest");
    io_.run();
  });
  for (auto& c : clients_) c->Start();
  log::Info("following upstream streams",
            {{"url", url->ToString()},
             {"streams", static_cast<int64_t>(clients_.size())},
             {"keys", static_cast<int64_t>(options_.keys.size())}});
  return absl::OkStatus();
}

void Ingester::Stop() {
  if (!thread_.joinable()) return;
  for (auto& c : clients_) c->Stop();
  work_.reset();
  thread_.join();
}

std::vector<StreamStatusSnapshot> Ingester::Snapshot() const {
  std::vector<StreamStatusSnapshot> out;
  out.reserve(clients_.size());
  for (const auto& c : clients_) out.push_back(c->Snapshot());
  return out;
}

void Ingester::OnCommitted(const storage::CommitResult& result) {
  absl::flat_hash_map<std::string_view, const storage::Event*> last;
  if (result.events != nullptr) {
    for (const storage::Event& e : *result.events) last[e.stream] = &e;
  }
  for (const auto& c : clients_) {
    auto it = last.find(c->stream());
    auto dup = result.duplicates.find(c->stream());
    const uint64_t dups = dup == result.duplicates.end() ? 0 : dup->second;
    if (it != last.end() || dups > 0) {
      c->OnCommitted(it == last.end() ? nullptr : it->second, dups);
    }
  }
}

}  // namespace chstream::ingest
