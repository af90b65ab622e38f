#include "tests/cluster/replica_set.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "chstream/v1/chstream.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace chstream::testing {

absl::StatusOr<v1::GetStatusResponse> GetReplicaStatus(
    const std::string& address) {
  auto stub = v1::CompanyStream::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  v1::GetStatusResponse response;
  grpc::Status s = stub->GetStatus(&ctx, v1::GetStatusRequest(), &response);
  if (!s.ok()) return absl::UnavailableError(s.error_message());
  return response;
}

std::string IngestHealth(const std::string& address) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service("ingest");
  grpc::health::v1::HealthCheckResponse response;
  if (!stub->Check(&ctx, request, &response).ok()) return "error";
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
      response.status());
}

std::string Replica::Role() const {
  absl::StatusOr<v1::GetStatusResponse> s = GetReplicaStatus(address);
  return s.ok() ? s->replica().role() : "";
}

ReplicaSet::ReplicaSet(Options options, PostgresServer* pg)
    : options_(std::move(options)), pg_(pg) {}

ReplicaSet::~ReplicaSet() = default;

absl::StatusOr<Replica*> ReplicaSet::Start(const std::string& id) {
  auto r = std::make_unique<Replica>();
  r->id = id;
  const std::string& uri = options_.postgres_url;
  r->process = std::make_unique<ChildProcess>(
      options_.binary,
      std::vector<std::string>{
          absl::StrCat("--postgres_url=", uri), "--grpc_address=127.0.0.1:0",
          "--metrics_address=127.0.0.1:0", absl::StrCat("--replica_id=", id),
          absl::StrCat("--upstream_url=", options_.upstream_url),
          "--log_level=info"},
      std::vector<std::string>{
          "PATH=/usr/bin:/bin", "TZ=UTC",
          absl::StrCat("CH_STREAMING_API_KEY=", options_.key)},
      options_.dir,
      absl::StrCat(options_.log_dir, "/", uri.substr(uri.rfind('/') + 1), "-",
                   id, ".log"));
  if (!r->process->started()) {
    return absl::InternalError(absl::StrCat("cannot start ", options_.binary));
  }
  WaitUntil(
      [&] {
        r->address = LoggedField(r->Output(), "grpc_address");
        return !r->address.empty() || !r->process->Running();
      },
      absl::Seconds(30));
  if (r->address.empty()) {
    return absl::InternalError(
        absl::StrCat("replica ", id, " does not serve:\n", r->Output()));
  }
  replicas_.push_back(std::move(r));
  return replicas_.back().get();
}

Replica* ReplicaSet::WaitForOneLeader(const std::vector<Replica*>& among,
                                      absl::Duration timeout) {
  Replica* leader = nullptr;
  const bool found = WaitUntil(
      [&] {
        leader = nullptr;
        std::string leader_id;
        int leaders = 0;
        for (Replica* r : among) {
          absl::StatusOr<v1::GetStatusResponse> s =
              GetReplicaStatus(r->address);
          if (!s.ok()) return false;
          const v1::ReplicaStatus& rs = s->replica();
          if (rs.role() == "leader") {
            ++leaders;
            leader = r;
          } else if (rs.role() != "follower") {
            return false;
          }
          if (rs.leader_id().empty()) return false;
          if (!leader_id.empty() && rs.leader_id() != leader_id) return false;
          leader_id = rs.leader_id();
        }
        return leaders == 1 && leader->id == leader_id;
      },
      timeout);
  return found ? leader : nullptr;
}

uint64_t ReplicaSet::SqlHead() {
  absl::StatusOr<std::string> h =
      pg_->QueryValue(options_.postgres_url, "SELECT head FROM cluster");
  uint64_t head = 0;
  if (h.ok()) (void)absl::SimpleAtoi(*h, &head);
  return head;
}

bool ReplicaSet::WaitForHead(uint64_t at_least, absl::Duration timeout) {
  return WaitUntil([&] { return SqlHead() >= at_least; }, timeout);
}

absl::Status ReplicaSet::CheckExactEventSet(
    const ingest::sim::Simulator& upstream) {
  const std::string& uri = options_.postgres_url;
  absl::StatusOr<std::string> counts = pg_->QueryValue(
      uri,
      "SELECT count(*) || ',' || coalesce(min(position), 0) || ',' || "
      "coalesce(max(position), 0) || ',' || (SELECT head FROM cluster) || "
      "',' || count(DISTINCT (stream, timepoint)) FROM events");
  if (!counts.ok()) return counts.status();
  std::vector<std::string> c = absl::StrSplit(*counts, ',');
  if (c.size() != 5 || c[1] != "1" || c[0] != c[2] || c[0] != c[3] ||
      c[0] != c[4]) {
    return absl::DataLossError(absl::StrCat(
        "events (count, min position, max position, head, distinct "
        "timepoints) = ",
        *counts,
        ": positions must be dense from 1 to the head, each "
        "timepoint once"));
  }
  absl::StatusOr<std::string> tps = pg_->QueryValue(
      uri,
      "SELECT string_agg(timepoint::text, ',' ORDER BY position) FROM "
      "events WHERE stream = 'companies'");
  if (!tps.ok()) return tps.status();
  std::vector<int64_t> stored;
  for (absl::string_view t : absl::StrSplit(*tps, ',', absl::SkipEmpty())) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(t, &v)) return absl::DataLossError("bad timepoint");
    stored.push_back(v);
  }
  if (stored.empty()) return absl::DataLossError("nothing stored");
  for (size_t i = 1; i < stored.size(); ++i) {
    if (stored[i] <= stored[i - 1]) {
      return absl::DataLossError(absl::StrCat("timepoint ", stored[i],
                                              " stored after ", stored[i - 1]));
    }
  }
  // The simulator keeps a bounded log (retention): compare from where both
  // begin.
  const std::vector<ingest::sim::Simulator::LogEntry> log =
      upstream.Log("companies");
  if (log.empty()) return absl::DataLossError("the upstream log is empty");
  const int64_t from = std::max(stored.front(), log.front().timepoint);
  stored.erase(stored.begin(),
               std::lower_bound(stored.begin(), stored.end(), from));
  if (stored.empty()) return absl::DataLossError("nothing stored in the log");
  std::vector<int64_t> published;
  for (const ingest::sim::Simulator::LogEntry& e : log) {
    if (e.timepoint >= from && e.timepoint <= stored.back()) {
      published.push_back(e.timepoint);
    }
  }
  for (size_t i = 0; i < std::max(stored.size(), published.size()); ++i) {
    const int64_t s = i < stored.size() ? stored[i] : -1;
    const int64_t p = i < published.size() ? published[i] : -1;
    if (s != p) {
      return absl::DataLossError(absl::StrCat(
          "stored timepoints ", stored.front(), "..", stored.back(), " (",
          stored.size(), ") differ from the published ones (", published.size(),
          ") at index ", i, ": stored ", s, ", published ", p));
    }
  }
  absl::StatusOr<std::string> gaps =
      pg_->QueryValue(uri, "SELECT count(*) FROM gaps");
  if (!gaps.ok()) return gaps.status();
  if (*gaps != "0") {
    return absl::DataLossError(absl::StrCat(*gaps, " gaps recorded"));
  }
  return absl::OkStatus();
}

absl::Status ReplicaSet::StopAll(absl::Duration each) {
  for (auto& r : replicas_) {
    if (!r->process->Running()) continue;
    const int code = r->process->SignalAndWait(SIGTERM, each);
    if (code != 0) {
      return absl::InternalError(
          absl::StrCat("replica ", r->id, " exited with ", code,
                       " after SIGTERM (-1: not within ",
                       absl::FormatDuration(each), "):\n", r->Output()));
    }
  }
  return absl::OkStatus();
}

}  // namespace chstream::testing
