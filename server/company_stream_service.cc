#include "server/company_stream_service.h"

#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "server/proto_convert.h"
#include "server/status_conversion.h"

namespace chstream::server {
namespace {

grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* ctx,
                                      const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

// Sets a timestamp field only when the time is known, so that unknown
// times are absent rather than 1970-01-01.
template <typename Message>
void SetTime(absl::Time t, Message* msg,
             google::protobuf::Timestamp* (Message::*field)()) {
  if (t != absl::InfinitePast()) *(msg->*field)() = ToTimestamp(t);
}

uint64_t FileSize(const std::string& path) {
  uint64_t total = 0;
  for (const std::string& p : {path, path + "-wal"}) {
    struct stat st;
    if (::stat(p.c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_size);
  }
  return total;
}

}  // namespace

CompanyStreamService::CompanyStreamService(storage::EventStore* store,
                                           SubscriptionHub* hub,
                                           Executor* executor,
                                           StreamStatusFn stream_status,
                                           Clock* clock, ServiceOptions options)
    : store_(store),
      hub_(hub),
      stream_status_(std::move(stream_status)),
      clock_(clock),
      options_(std::move(options)),
      registry_(options_.max_subscribers, options_.max_replays) {
  Executor* reads = options_.read_executor;
  if (reads == nullptr) {
    own_read_executor_ =
        std::make_unique<Executor>(std::max(1, options_.read_threads));
    reads = own_read_executor_.get();
  }
  stream_ctx_.store = store;
  stream_ctx_.hub = hub;
  stream_ctx_.executor = executor;
  stream_ctx_.read_executor = reads;
  stream_ctx_.clock = clock;
  stream_ctx_.page_size = options_.page_size;
  stream_ctx_.max_scan = options_.max_scan;
  stream_ctx_.subscriber_queue = {options_.subscriber_queue,
                                  options_.subscriber_queue_bytes};
  stream_ctx_.max_subscriber_lag = options_.max_subscriber_lag;
  stream_ctx_.write_timeout = options_.subscriber_write_timeout;
  stream_ctx_.pages_read = &pages_read_;
  stream_ctx_.before_start_write = options_.before_start_write;
}

absl::Status CompanyStreamService::FillStatus(v1::GetStatusResponse* out) {
  out->Clear();
  if (stream_status_) {
    for (const ingest::StreamStatusSnapshot& s : stream_status_()) {
      v1::StreamStatus* ps = out->add_streams();
      ps->set_stream(s.stream);
      ps->set_state(static_cast<v1::StreamState>(static_cast<int>(s.state)));
      ps->set_last_timepoint(s.last_timepoint.value_or(0));
      SetTime(s.last_published_at, ps,
              &v1::StreamStatus::mutable_last_published_at);
      SetTime(s.last_event_at, ps, &v1::StreamStatus::mutable_last_event_at);
      SetTime(s.last_heartbeat_at, ps,
              &v1::StreamStatus::mutable_last_heartbeat_at);
      SetTime(s.connected_since, ps,
              &v1::StreamStatus::mutable_connected_since);
      SetTime(s.next_retry_at, ps, &v1::StreamStatus::mutable_next_retry_at);
      ps->set_events_total(s.events_total);
      ps->set_heartbeats_total(s.heartbeats_total);
      ps->set_malformed_total(s.malformed_total);
      ps->set_duplicates_total(s.duplicates_total);
      ps->set_reconnects_total(s.reconnects_total);
      ps->set_bytes_total(s.bytes_total);
      ps->set_last_error(log::Redact(s.last_error));
      ps->set_last_http_status(s.last_http_status);
      ps->set_lag_seconds(s.lag_seconds);
      ps->set_reader_wait_seconds(absl::ToDoubleSeconds(s.reader_wait));
      for (const ingest::TimepointGapInfo& g : s.gaps) {
        v1::TimepointGap* pg = ps->add_gaps();
        pg->set_last_timepoint(g.last_timepoint);
        SetTime(g.recorded_at, pg, &v1::TimepointGap::mutable_recorded_at);
      }
    }
  }
  CHS_ASSIGN_OR_RETURN(storage::StoreStats stats, store_->Stats());
  v1::StoreStatus* st = out->mutable_store();
  st->set_head_position(stats.head_position);
  st->set_oldest_position(stats.oldest_position);
  st->set_events_stored(stats.events_stored);
  st->set_companies_stored(stats.companies_stored);
  st->set_dead_letters(stats.dead_letters);
  st->set_db_path(store_->location());
  st->set_db_size_bytes(stats.db_size_bytes != 0
                            ? stats.db_size_bytes
                            : FileSize(store_->location()));
  st->set_store_id(store_->store_id());
  st->set_synchronous(store_->synchronous_full() ? "full" : "normal");
  for (v1::SubscriberStatus& s : registry_.Snapshot()) {
    *out->add_subscribers() = std::move(s);
  }
  *out->mutable_started_at() = ToTimestamp(options_.started_at);
  out->set_version(options_.version);
  out->set_upstream(log::RedactUrl(options_.upstream));
  HealthFiller health;
  {
    absl::MutexLock lock(&health_mu_);
    health = health_filler_;
  }
  if (health) health(out->mutable_health());
  if (options_.replica) options_.replica(out->mutable_replica());
  return absl::OkStatus();
}

void CompanyStreamService::SetHealthFiller(HealthFiller filler) {
  absl::MutexLock lock(&health_mu_);
  health_filler_ = std::move(filler);
}

grpc::ServerUnaryReactor* CompanyStreamService::GetStatus(
    grpc::CallbackServerContext* ctx, const v1::GetStatusRequest* /*request*/,
    v1::GetStatusResponse* response) {
  return FinishUnary(ctx, ToGrpcStatus(FillStatus(response)));
}

grpc::ServerUnaryReactor* CompanyStreamService::GetCompany(
    grpc::CallbackServerContext* ctx, const v1::GetCompanyRequest* request,
    v1::Company* response) {
  absl::StatusOr<std::string> number =
      NormalizeCompanyNumber(request->company_number());
  if (!number.ok()) return FinishUnary(ctx, ToGrpcStatus(number.status()));
  absl::StatusOr<std::optional<storage::CompanyRecord>> company =
      store_->GetCompany(*number);
  if (!company.ok()) return FinishUnary(ctx, ToGrpcStatus(company.status()));
  if (!company->has_value()) {
    return FinishUnary(
        ctx, grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("company ", *number,
                                       " has not been seen on the companies "
                                       "stream")));
  }
  ToProto(**company, response);
  return FinishUnary(ctx, grpc::Status::OK);
}

grpc::ServerWriteReactor<v1::Event>* CompanyStreamService::ReplayEvents(
    grpc::CallbackServerContext* ctx, const v1::ReplayEventsRequest* request) {
  // Before anything is sent, errors included: a client learns which store
  // its positions come from even when no event follows.
  ctx->AddInitialMetadata(kStoreIdMetadataKey, store_->store_id());
  return NewReplayReactor(stream_ctx_, &registry_, ctx, *request);
}

grpc::ServerWriteReactor<v1::SubscribeResponse>*
CompanyStreamService::Subscribe(grpc::CallbackServerContext* ctx,
                                const v1::SubscribeRequest* request) {
  ctx->AddInitialMetadata(kStoreIdMetadataKey, store_->store_id());
  return NewSubscribeReactor(stream_ctx_, &registry_, ctx, *request);
}

}  // namespace chstream::server
