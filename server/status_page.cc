#include "server/status_page.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/json.h"
#include "base/thread_name.h"
#include "server/status_page_html.h"

namespace chstream::server {
namespace {

constexpr char kJson[] = "application/json";

HttpResponse Unavailable(const absl::Status& status) {
  return HttpResponse{
      .status = 503,
      .body = absl::StrCat("status unavailable: ", status.message(), "\n")};
}

}  // namespace

absl::StatusOr<std::string> StatusToJson(const v1::GetStatusResponse& status) {
  google::protobuf::util::JsonPrintOptions options;
  // Zeros (lag 0, no reconnects) are facts worth showing, not absent fields.
  options.always_print_primitive_fields = true;
  std::string json;
  const auto converted =
      google::protobuf::util::MessageToJsonString(status, &json, options);
  if (!converted.ok()) {
    return absl::InternalError(
        absl::StrCat("status to JSON: ", converted.ToString()));
  }
  return json;
}

const char* StatusPageHtml() { return kStatusPageHtml; }

IngestHistory::IngestHistory(Options options, SnapshotsFn snapshots,
                             Clock* clock)
    : options_(options), snapshots_(std::move(snapshots)), clock_(clock) {}

IngestHistory::~IngestHistory() { Stop(); }

void IngestHistory::Sample() {
  const std::vector<ingest::StreamStatusSnapshot> snapshots = snapshots_();
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  for (const ingest::StreamStatusSnapshot& s : snapshots) {
    auto& samples = samples_[s.stream];
    samples.emplace_back(now, s.events_total);
    while (samples.size() > std::max<size_t>(options_.max_samples, 1)) {
      samples.pop_front();
    }
  }
}

void IngestHistory::Start() {
  absl::MutexLock lock(&thread_mu_);
  if (thread_.joinable()) return;
  stop_ = std::make_unique<absl::Notification>();
  Sample();
  thread_ = std::thread([this, stop = stop_.get()] {
    SetCurrentThreadName("chs-history");
    while (!stop->WaitForNotificationWithTimeout(options_.interval)) {
      Sample();
    }
  });
}

void IngestHistory::Stop() {
  absl::MutexLock lock(&thread_mu_);
  if (!thread_.joinable()) return;
  stop_->Notify();
  thread_.join();
}

std::string IngestHistory::JsonMembers() const {
  std::string out = absl::StrCat(
      "\"intervalSeconds\":", absl::ToDoubleSeconds(options_.interval),
      ",\"maxSamples\":", options_.max_samples, ",\"streams\":[");
  absl::MutexLock lock(&mu_);
  bool first_stream = true;
  for (const auto& [stream, samples] : samples_) {
    if (!first_stream) out += ",";
    first_stream = false;
    out += "{\"stream\":";
    AppendJsonString(&out, stream);
    out += ",\"samples\":[";
    bool first = true;
    for (const auto& [at, events] : samples) {
      absl::StrAppend(&out, first ? "" : ",", "[", absl::ToUnixMillis(at), ",",
                      events, "]");
      first = false;
    }
    out += "]}";
  }
  out += "]";
  return out;
}

std::map<std::string, HttpListener::Handler> StatusPageHandlers(
    StatusPageSources sources) {
  auto shared = std::make_shared<const StatusPageSources>(std::move(sources));
  std::map<std::string, HttpListener::Handler> handlers;
  handlers["/"] = [] {
    return HttpResponse{.status = 200,
                        .content_type = "text/html; charset=utf-8",
                        .body = kStatusPageHtml};
  };
  handlers["/status.json"] = [shared] {
    v1::GetStatusResponse status;
    if (absl::Status s = shared->status(&status); !s.ok()) {
      return Unavailable(s);
    }
    absl::StatusOr<std::string> json = StatusToJson(status);
    if (!json.ok()) return Unavailable(json.status());
    return HttpResponse{
        .status = 200, .content_type = kJson, .body = *std::move(json)};
  };
  handlers["/history.json"] = [shared] {
    std::string body = "{";
    body += shared->history != nullptr
                ? shared->history->JsonMembers()
                : "\"intervalSeconds\":0,\"maxSamples\":0,\"streams\":[]";
    body += ",\"alerts\":[";
    if (shared->alerts) {
      const std::vector<HealthTransition> all = shared->alerts();
      size_t shown = 0;
      for (auto it = all.rbegin();
           it != all.rend() && shown < shared->max_alerts; ++it, ++shown) {
        if (shown > 0) body += ",";
        body += AlertJson(*it);
      }
    }
    body += "]}";
    return HttpResponse{
        .status = 200, .content_type = kJson, .body = std::move(body)};
  };
  return handlers;
}

}  // namespace chstream::server
