#include "cluster/pg_connection.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace chstream::cluster {
namespace {

std::string Message(const PGconn* conn) {
  return std::string(absl::StripTrailingAsciiWhitespace(
      conn == nullptr ? "out of memory" : PQerrorMessage(conn)));
}

}  // namespace

PgParams KeepaliveParams(const std::string& application_name) {
  return {
      {"application_name", application_name},
      {"connect_timeout", "5"},
      {"keepalives", "1"},
      {"keepalives_idle", "5"},
      {"keepalives_interval", "2"},
      {"keepalives_count", "3"},
      {"tcp_user_timeout", "10000"},
      {"options",
       "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 "
       "-c tcp_keepalives_count=3 -c tcp_user_timeout=10000 "
       "-c lock_timeout=5000"},
  };
}

absl::StatusOr<std::unique_ptr<PgConnection>> PgConnection::Connect(
    const std::string& url, const PgParams& params) {
  // expand_dbname: the first "dbname" value is the URI; later keywords
  // override what it says.
  std::vector<const char*> keywords = {"dbname"};
  std::vector<const char*> values = {url.c_str()};
  for (const auto& [key, value] : params) {
    keywords.push_back(key.c_str());
    values.push_back(value.c_str());
  }
  keywords.push_back(nullptr);
  values.push_back(nullptr);
  PGconn* conn =
      PQconnectdbParams(keywords.data(), values.data(), /*expand_dbname=*/1);
  if (conn == nullptr || PQstatus(conn) != CONNECTION_OK) {
    absl::Status status = absl::UnavailableError(
        absl::StrCat("cannot connect to PostgreSQL: ", Message(conn)));
    PQfinish(conn);
    return status;
  }
  return std::unique_ptr<PgConnection>(new PgConnection(conn));
}

PgConnection::~PgConnection() { PQfinish(conn_); }

absl::StatusOr<PgResult> PgConnection::Exec(
    const std::string& sql, const std::vector<std::string>& params) {
  std::vector<const char*> values;
  for (const std::string& p : params) values.push_back(p.c_str());
  PgResult result(PQexecParams(conn_, sql.c_str(),
                               static_cast<int>(values.size()), nullptr,
                               values.data(), nullptr, nullptr, 0));
  const ExecStatusType status =
      result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return result;
  const std::string message =
      result ? std::string(absl::StripTrailingAsciiWhitespace(
                   PQresultErrorMessage(result.get())))
             : Message(conn_);
  if (!ok()) {
    return absl::UnavailableError(
        absl::StrCat("PostgreSQL connection lost: ", message));
  }
  return absl::InternalError(message);
}

int AffectedRows(const PgResult& result) {
  int n = 0;
  return absl::SimpleAtoi(PQcmdTuples(result.get()), &n) ? n : 0;
}

}  // namespace chstream::cluster
