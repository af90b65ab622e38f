#include "server/stream_status_table.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/json.h"
#include "ingest/reconnect_policy.h"

namespace chstream::server {
namespace {

using storage::pg::KeepaliveParams;
using storage::pg::PgConnection;
using storage::pg::PgParam;
using storage::pg::PgParams;
using storage::pg::PgResult;

// Debian's abseil has its own string_view type, which SimpleAtoi needs.
absl::string_view Av(std::string_view s) { return {s.data(), s.size()}; }

// The columns after `stream`, in the order Record binds them ($2...).
constexpr const char* kColumns[] = {"state",
                                    "last_timepoint",
                                    "last_published_at",
                                    "last_event_at",
                                    "last_heartbeat_at",
                                    "connected_since",
                                    "next_retry_at",
                                    "events_total",
                                    "heartbeats_total",
                                    "malformed_total",
                                    "duplicates_total",
                                    "reconnects_total",
                                    "bytes_total",
                                    "partial_lines_total",
                                    "last_error",
                                    "last_http_status",
                                    "lag_seconds",
                                    "reader_wait_seconds",
                                    "reconnects_by_cause",
                                    "http_responses",
                                    "gaps",
                                    "replica_id",
                                    "leader_epoch"};
// Their SQL types (parameters are text; '' stands for NULL where nullable).
constexpr const char* kCasts[] = {"$::text",
                                  "NULLIF($, '')::bigint",
                                  "NULLIF($, '')::timestamptz",
                                  "NULLIF($, '')::timestamptz",
                                  "NULLIF($, '')::timestamptz",
                                  "NULLIF($, '')::timestamptz",
                                  "NULLIF($, '')::timestamptz",
                                  "$::bigint",
                                  "$::bigint",
                                  "$::bigint",
                                  "$::bigint",
                                  "$::bigint",
                                  "$::bigint",
                                  "$::bigint",
                                  "$::text",
                                  "$::int",
                                  "$::double precision",
                                  "$::double precision",
                                  "$::jsonb",
                                  "$::jsonb",
                                  "$::jsonb",
                                  "$::text",
                                  "$::bigint"};
static_assert(std::size(kColumns) == std::size(kCasts));

std::string UpsertSql() {
  std::string cols = "stream";
  std::string values = "$1::text";
  std::string updates;
  for (size_t i = 0; i < std::size(kColumns); ++i) {
    absl::StrAppend(&cols, ", ", kColumns[i]);
    std::string cast = kCasts[i];
    cast.replace(cast.find('$'), 1, absl::StrCat("$", i + 2));
    absl::StrAppend(&values, ", ", cast);
    absl::StrAppend(&updates, i == 0 ? "" : ", ", kColumns[i], " = EXCLUDED.",
                    kColumns[i]);
  }
  return absl::StrCat("INSERT INTO stream_status (", cols,
                      ", recorded_at) VALUES (", values,
                      ", now()) ON CONFLICT (stream) DO UPDATE SET ", updates,
                      ", recorded_at = now()");
}

std::string Time(absl::Time t) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) return "";
  return FormatRfc3339(t);
}

std::string Micros(const char* column) {
  return absl::StrCat("(extract(epoch FROM ", column, ") * 1000000)::bigint");
}

// A bigint column of microseconds since the epoch (Micros above).
absl::Time TimeOf(const PgResult& r, int row, int col) {
  if (r.IsNull(row, col)) return absl::InfinitePast();
  return absl::FromUnixMicros(r.GetInt64(row, col));
}

uint64_t U64(const PgResult& r, int row, int col) {
  return static_cast<uint64_t>(r.GetInt64(row, col));
}

double Double(const PgResult& r, int row, int col) {
  double v = 0;
  (void)absl::SimpleAtod(Av(r.Get(row, col)), &v);
  return v;
}

std::optional<absl::Duration> SecondsAgo(const PgResult& r, int row, int col) {
  if (r.IsNull(row, col)) return std::nullopt;
  return absl::Seconds(std::max(0.0, Double(r, row, col)));
}

std::vector<PgParam> Texts(std::vector<std::string> values) {
  std::vector<PgParam> params;
  params.reserve(values.size());
  for (std::string& v : values) params.push_back(PgParam::Text(std::move(v)));
  return params;
}

ingest::StreamState StateNamed(std::string_view name) {
  for (int i = 1; i <= 7; ++i) {
    const auto s = static_cast<ingest::StreamState>(i);
    if (ingest::StreamStateName(s) == name) return s;
  }
  return ingest::StreamState::kConnecting;
}

}  // namespace

StreamStatusTable::StreamStatusTable(Options options)
    : options_(std::move(options)) {}

StreamStatusTable::~StreamStatusTable() = default;

absl::Status StreamStatusTable::EnsureConnected() {
  if (conn_ != nullptr && conn_->healthy()) return absl::OkStatus();
  conn_.reset();
  PgParams params = KeepaliveParams();
  for (auto& [key, value] : params) {
    // A statement never holds the worker thread for long.
    // A transaction left open by a paused process would hold the cluster
    // row (FOR SHARE) against every takeover: the server ends it.
    if (key == "options") {
      absl::StrAppend(&value,
                      " -c statement_timeout=5000"
                      " -c idle_in_transaction_session_timeout=10000");
    }
  }
  absl::StatusOr<PgConnection> conn = PgConnection::Connect(
      options_.url, absl::StrCat("chstream-status:", options_.replica_id),
      params);
  if (!conn.ok()) return conn.status();
  conn_ = std::make_unique<PgConnection>(*std::move(conn));
  return absl::OkStatus();
}

absl::Status StreamStatusTable::Record(
    int64_t epoch, const std::vector<ingest::StreamStatusSnapshot>& streams) {
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  static const std::string* const kUpsert = new std::string(UpsertSql());
  auto run = [&]() -> absl::Status {
    absl::StatusOr<PgResult> r = conn_->Exec("BEGIN");
    if (!r.ok()) return r.status();
    r = conn_->Query(
        "SELECT 1 FROM cluster WHERE id = 1 AND leader_epoch = $1 FOR SHARE",
        {PgParam::Int(epoch)});
    if (!r.ok()) return r.status();
    if (r->rows() != 1) {
      return absl::FailedPreconditionError(
          absl::StrCat("fenced: leader epoch ", epoch,
                       " is no longer current; stream status not recorded"));
    }
    std::vector<std::string> names;
    for (const ingest::StreamStatusSnapshot& s : streams) {
      names.push_back(s.stream);
    }
    std::string array = "{";
    for (size_t i = 0; i < names.size(); ++i) {
      absl::StrAppend(&array, i == 0 ? "" : ",", JsonString(names[i]));
    }
    array += "}";
    r = conn_->Query("DELETE FROM stream_status WHERE NOT stream = ANY($1)",
                     {PgParam::Text(array)});
    if (!r.ok()) return r.status();
    for (const ingest::StreamStatusSnapshot& s : streams) {
      std::string causes = "{";
      for (const auto& [cause, n] : s.reconnects_by_cause) {
        absl::StrAppend(&causes, causes.size() > 1 ? "," : "",
                        JsonString(cause), ":", n);
      }
      causes += "}";
      std::string http = "{";
      for (const auto& [code, n] : s.http_responses) {
        absl::StrAppend(&http, http.size() > 1 ? "," : "", "\"", code,
                        "\":", n);
      }
      http += "}";
      std::string gaps = "[";
      for (const ingest::TimepointGapInfo& g : s.gaps) {
        absl::StrAppend(&gaps, gaps.size() > 1 ? "," : "",
                        "{\"last_timepoint\":", g.last_timepoint,
                        ",\"recorded_at\":", JsonString(Time(g.recorded_at)),
                        "}");
      }
      gaps += "]";
      r = conn_->Query(
          *kUpsert,
          Texts({s.stream,
                 std::string(ingest::StreamStateName(s.state)),
                 s.last_timepoint ? absl::StrCat(*s.last_timepoint) : "",
                 Time(s.last_published_at),
                 Time(s.last_event_at),
                 Time(s.last_heartbeat_at),
                 Time(s.connected_since),
                 Time(s.next_retry_at),
                 absl::StrCat(s.events_total),
                 absl::StrCat(s.heartbeats_total),
                 absl::StrCat(s.malformed_total),
                 absl::StrCat(s.duplicates_total),
                 absl::StrCat(s.reconnects_total),
                 absl::StrCat(s.bytes_total),
                 absl::StrCat(s.partial_lines_total),
                 s.last_error,
                 absl::StrCat(s.last_http_status),
                 absl::StrCat(std::isfinite(s.lag_seconds) ? s.lag_seconds : 0),
                 absl::StrCat(absl::ToDoubleSeconds(s.reader_wait)),
                 causes,
                 http,
                 gaps,
                 options_.replica_id,
                 absl::StrCat(epoch)}));
      if (!r.ok()) return r.status();
    }
    r = conn_->Exec("COMMIT");
    return r.status();
  };
  absl::Status status = run();
  if (!status.ok() && conn_ != nullptr && conn_->healthy()) {
    (void)conn_->Exec("ROLLBACK");
  }
  return status;
}

absl::StatusOr<StreamStatusTable::View> StreamStatusTable::Load() {
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  View view;
  absl::StatusOr<PgResult> cluster = conn_->Exec(
      "SELECT leader_epoch, coalesce(leader_id, ''), "
      "extract(epoch FROM now() - heartbeat_at) FROM cluster WHERE id = 1");
  if (!cluster.ok()) return cluster.status();
  if (cluster->rows() == 1) {
    const PgResult& c = *cluster;
    view.leader_epoch = c.GetInt64(0, 0);
    view.leader_id = std::string(c.Get(0, 1));
    view.heartbeat_ago = SecondsAgo(c, 0, 2);
  }
  absl::StatusOr<PgResult> rows = conn_->Exec(absl::StrCat(
      "SELECT stream, state, last_timepoint, ", Micros("last_published_at"),
      ", ", Micros("last_event_at"), ", ", Micros("last_heartbeat_at"), ", ",
      Micros("connected_since"), ", ", Micros("next_retry_at"),
      ", events_total, heartbeats_total, malformed_total, duplicates_total, "
      "reconnects_total, bytes_total, partial_lines_total, last_error, "
      "last_http_status, lag_seconds, reader_wait_seconds, "
      "coalesce((SELECT string_agg(key || '=' || value, ',') FROM "
      "jsonb_each_text(reconnects_by_cause)), ''), "
      "coalesce((SELECT string_agg(key || '=' || value, ',') FROM "
      "jsonb_each_text(http_responses)), ''), "
      "coalesce((SELECT string_agg((g->>'last_timepoint') || '@' || "
      "coalesce((extract(epoch FROM NULLIF(g->>'recorded_at', '')::"
      "timestamptz) * 1000000)::bigint::text, ''), ',') FROM "
      "jsonb_array_elements(gaps) g), ''), "
      "extract(epoch FROM now() - recorded_at) "
      "FROM stream_status ORDER BY stream"));
  if (!rows.ok()) return rows.status();
  const PgResult& r = *rows;
  for (int i = 0; i < r.rows(); ++i) {
    ingest::StreamStatusSnapshot s;
    s.stream = std::string(r.Get(i, 0));
    s.state = StateNamed(r.Get(i, 1));
    if (!r.IsNull(i, 2)) s.last_timepoint = r.GetInt64(i, 2);
    s.last_published_at = TimeOf(r, i, 3);
    s.last_event_at = TimeOf(r, i, 4);
    s.last_heartbeat_at = TimeOf(r, i, 5);
    s.connected_since = TimeOf(r, i, 6);
    s.next_retry_at = TimeOf(r, i, 7);
    s.events_total = U64(r, i, 8);
    s.heartbeats_total = U64(r, i, 9);
    s.malformed_total = U64(r, i, 10);
    s.duplicates_total = U64(r, i, 11);
    s.reconnects_total = U64(r, i, 12);
    s.bytes_total = U64(r, i, 13);
    s.partial_lines_total = U64(r, i, 14);
    s.last_error = std::string(r.Get(i, 15));
    s.last_http_status = static_cast<int>(U64(r, i, 16));
    s.lag_seconds = Double(r, i, 17);
    s.reader_wait = absl::Seconds(Double(r, i, 18));
    for (absl::string_view kv :
         absl::StrSplit(Av(r.Get(i, 19)), ',', absl::SkipEmpty())) {
      std::pair<std::string, std::string> p = absl::StrSplit(kv, '=');
      uint64_t n = 0;
      if (absl::SimpleAtoi(p.second, &n)) s.reconnects_by_cause[p.first] = n;
    }
    for (absl::string_view kv :
         absl::StrSplit(Av(r.Get(i, 20)), ',', absl::SkipEmpty())) {
      std::pair<std::string, std::string> p = absl::StrSplit(kv, '=');
      int code = 0;
      uint64_t n = 0;
      if (absl::SimpleAtoi(p.first, &code) && absl::SimpleAtoi(p.second, &n)) {
        s.http_responses[code] = n;
      }
    }
    for (absl::string_view g :
         absl::StrSplit(Av(r.Get(i, 21)), ',', absl::SkipEmpty())) {
      std::pair<std::string, std::string> p = absl::StrSplit(g, '@');
      ingest::TimepointGapInfo info;
      (void)absl::SimpleAtoi(p.first, &info.last_timepoint);
      int64_t micros = 0;
      if (absl::SimpleAtoi(p.second, &micros)) {
        info.recorded_at = absl::FromUnixMicros(micros);
      }
      s.gaps.push_back(info);
    }
    std::optional<absl::Duration> ago = SecondsAgo(r, i, 22);
    if (ago && (!view.recorded_ago || *ago < *view.recorded_ago)) {
      view.recorded_ago = ago;
    }
    view.streams.push_back(std::move(s));
  }
  return view;
}

}  // namespace chstream::server
