#include "storage/postgres/pg_connection.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "base/log.h"
#include "base/status_macros.h"

namespace chstream::storage::pg {
namespace {

// Debian's abseil has its own string_view type, which StrCat needs.
absl::string_view Av(std::string_view s) { return {s.data(), s.size()}; }

// SQLSTATE classes and codes that decide the status code.
absl::StatusCode CodeFor(std::string_view sqlstate) {
  if (sqlstate.empty()) return absl::StatusCode::kUnavailable;  // no server
  if (absl::StartsWith(Av(sqlstate), "08")) {
    return absl::StatusCode::kUnavailable;  // connection exception
  }
  if (sqlstate == "57P01" || sqlstate == "57P02" || sqlstate == "57P03") {
    return absl::StatusCode::kUnavailable;  // admin/crash shutdown, starting
  }
  if (sqlstate == "40001" || sqlstate == "40P01") {
    return absl::StatusCode::kAborted;  // serialization failure, deadlock
  }
  if (sqlstate == "28P01" || sqlstate == "28000") {
    return absl::StatusCode::kPermissionDenied;
  }
  if (sqlstate == "53100") return absl::StatusCode::kResourceExhausted;
  if (sqlstate == "23505") return absl::StatusCode::kAlreadyExists;
  return absl::StatusCode::kInternal;
}

std::string Scrub(std::string message, const std::string& password) {
  while (!message.empty() &&
         (message.back() == '\n' || message.back() == ' ')) {
    message.pop_back();
  }
  // One line: libpq adds DETAIL/HINT lines and connection attempt lists.
  absl::StrReplaceAll({{"\n", "; "}}, &message);
  if (!password.empty()) {
    absl::StrReplaceAll({{password, "[password]"}}, &message);
  }
  return message;
}

constexpr char kHexDigits[] = "0123456789abcdef";

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

// ----------------------------------------------------------------- PgResult

int64_t PgResult::GetInt64(int row, int col) const {
  int64_t v = 0;
  if (IsNull(row, col) || !absl::SimpleAtoi(Av(Get(row, col)), &v)) return 0;
  return v;
}

std::string PgResult::GetBytea(int row, int col) const {
  std::string_view text = Get(row, col);
  std::string out;
  if (text.size() < 2 || text[0] != '\\' || text[1] != 'x') return out;
  out.resize((text.size() - 2) / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<char>((HexValue(text[2 + 2 * i]) << 4) |
                               HexValue(text[3 + 2 * i]));
  }
  return out;
}

int64_t PgResult::AffectedRows() const {
  int64_t v = 0;
  if (!absl::SimpleAtoi(PQcmdTuples(r_.get()), &v)) return 0;
  return v;
}

// ------------------------------------------------------------- PgConnection

PgParams KeepaliveParams() {
  return {
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

absl::StatusOr<PgConnection> PgConnection::Connect(
    const std::string& url, const std::string& application_name,
    const PgParams& params) {
  PgConnection c;
  // The password (if the URL carries one) is never printed: remember it to
  // scrub messages, and register it with the logger.
  char* parse_error = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &parse_error);
  if (options == nullptr) {
    std::string why = parse_error != nullptr ? parse_error : "out of memory";
    PQfreemem(parse_error);
    return absl::InvalidArgumentError(absl::StrCat("invalid PostgreSQL URL ",
                                                   RedactPostgresUrl(url), ": ",
                                                   Scrub(why, "")));
  }
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (std::strcmp(o->keyword, "password") == 0 && o->val != nullptr &&
        o->val[0] != '\0') {
      c.password_ = o->val;
      log::AddSecret(c.password_);
    }
  }
  PQconninfoFree(options);
  for (const auto& [key, value] : params) {
    if (key == "password" && !value.empty()) {
      c.password_ = value;
      log::AddSecret(c.password_);
    }
  }

  // expand_dbname: the first "dbname" value is a URI or conninfo string,
  // expanded in place; keywords after it override what it says (libpq
  // takes the last non-empty value of each keyword).
  std::vector<const char*> keywords = {"dbname", "application_name",
                                       "connect_timeout"};
  std::vector<const char*> values = {url.c_str(), application_name.c_str(),
                                     "10"};
  for (const auto& [key, value] : params) {
    keywords.push_back(key.c_str());
    values.push_back(value.c_str());
  }
  keywords.push_back(nullptr);
  values.push_back(nullptr);
  c.conn_.reset(
      PQconnectdbParams(keywords.data(), values.data(), /*expand_dbname=*/1));
  if (c.conn_ == nullptr) {
    return absl::ResourceExhaustedError("libpq: out of memory");
  }
  if (PQstatus(c.conn_.get()) != CONNECTION_OK) {
    const std::string message =
        Scrub(PQerrorMessage(c.conn_.get()), c.password_);
    absl::StatusCode code = absl::StatusCode::kUnavailable;
    if (absl::StrContains(message, "password authentication failed") ||
        absl::StrContains(message, "no password supplied")) {
      code = absl::StatusCode::kPermissionDenied;
    } else if (absl::StrContains(message, "does not exist")) {
      code = absl::StatusCode::kNotFound;  // database or role
    }
    return absl::Status(code,
                        absl::StrCat("cannot connect to PostgreSQL at ",
                                     RedactPostgresUrl(url), ": ", message));
  }
  CHS_RETURN_IF_ERROR(c.SetUpSession());
  return c;
}

absl::Status PgConnection::SetUpSession() {
  // Times are written as UTC literals and read as epoch microseconds, so the
  // session time zone only matters to people reading with psql; notices
  // (e.g. "relation already exists, skipping") are not interesting.
  PQsetNoticeProcessor(
      conn_.get(), +[](void*, const char*) {}, nullptr);
  CHS_ASSIGN_OR_RETURN(PgResult r, Exec("SET TimeZone = 'UTC'; "
                                        "SET client_min_messages = warning"));
  (void)r;
  for (const std::string& sql : session_sql_) {
    CHS_RETURN_IF_ERROR(Exec(sql).status());
  }
  return absl::OkStatus();
}

absl::Status PgConnection::AddSessionSql(const std::string& sql) {
  CHS_RETURN_IF_ERROR(Exec(sql).status());
  session_sql_.push_back(sql);
  return absl::OkStatus();
}

absl::Status PgConnection::EnsureReady() {
  if (conn_ == nullptr) return absl::UnavailableError("no connection");
  if (PQstatus(conn_.get()) != CONNECTION_OK) {
    PQreset(conn_.get());
    if (PQstatus(conn_.get()) != CONNECTION_OK) {
      return absl::UnavailableError(
          absl::StrCat("cannot reconnect to PostgreSQL: ",
                       Scrub(PQerrorMessage(conn_.get()), password_)));
    }
    CHS_RETURN_IF_ERROR(SetUpSession());
    for (const auto& [name, sql] : prepared_) {
      CHS_RETURN_IF_ERROR(
          Check(PQprepare(conn_.get(), name.c_str(), sql.c_str(), 0, nullptr),
                absl::StrCat("prepare ", name))
              .status());
    }
    return absl::OkStatus();
  }
  const PGTransactionStatusType ts = PQtransactionStatus(conn_.get());
  if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) {
    CHS_RETURN_IF_ERROR(Exec("ROLLBACK").status());
  }
  return absl::OkStatus();
}

absl::Status PgConnection::Error(std::string_view what,
                                 const PGresult* result) const {
  std::string message;
  std::string sqlstate;
  if (result != nullptr) {
    message = PQresultErrorMessage(result);
    if (const char* s = PQresultErrorField(result, PG_DIAG_SQLSTATE)) {
      sqlstate = s;
    }
  }
  if (message.empty()) message = PQerrorMessage(conn_.get());
  const bool lost = PQstatus(conn_.get()) != CONNECTION_OK;
  if (lost) sqlstate.clear();
  return absl::Status(
      CodeFor(sqlstate),
      absl::StrCat("PostgreSQL ", Av(what), ": ",
                   lost ? "connection lost: " : "", Scrub(message, password_),
                   sqlstate.empty() ? "" : " (SQLSTATE ", sqlstate,
                   sqlstate.empty() ? "" : ")"));
}

absl::StatusOr<PgResult> PgConnection::Check(PGresult* raw,
                                             std::string_view what) {
  PgResult r(raw);
  if (raw == nullptr) return Error(what, nullptr);
  switch (PQresultStatus(raw)) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_EMPTY_QUERY:
      return r;
    default:
      return Error(what, raw);
  }
}

absl::StatusOr<PgResult> PgConnection::Exec(std::string_view sql) {
  const std::string s(sql);
  return Check(PQexec(conn_.get(), s.c_str()), sql.substr(0, 60));
}

namespace {

struct ParamArrays {
  std::vector<const char*> values;
  std::vector<int> lengths;
  std::vector<int> formats;

  explicit ParamArrays(const std::vector<PgParam>& params) {
    for (const PgParam& p : params) {
      values.push_back(p.value.has_value() ? p.value->data() : nullptr);
      lengths.push_back(p.value.has_value() ? static_cast<int>(p.value->size())
                                            : 0);
      formats.push_back(p.binary ? 1 : 0);
    }
  }
};

}  // namespace

absl::StatusOr<PgResult> PgConnection::Query(
    std::string_view sql, const std::vector<PgParam>& params) {
  const std::string s(sql);
  ParamArrays a(params);
  return Check(
      PQexecParams(conn_.get(), s.c_str(), static_cast<int>(params.size()),
                   nullptr, a.values.data(), a.lengths.data(), a.formats.data(),
                   0),
      sql.substr(0, 60));
}

absl::Status PgConnection::Prepare(const std::string& name,
                                   const std::string& sql) {
  CHS_RETURN_IF_ERROR(
      Check(PQprepare(conn_.get(), name.c_str(), sql.c_str(), 0, nullptr),
            absl::StrCat("prepare ", name))
          .status());
  prepared_.emplace_back(name, sql);
  return absl::OkStatus();
}

absl::StatusOr<PgResult> PgConnection::ExecPrepared(
    const std::string& name, const std::vector<PgParam>& params) {
  ParamArrays a(params);
  return Check(
      PQexecPrepared(conn_.get(), name.c_str(), static_cast<int>(params.size()),
                     a.values.data(), a.lengths.data(), a.formats.data(), 0),
      name);
}

absl::Status PgConnection::CopyIn(std::string_view copy_sql,
                                  std::string_view data) {
  const std::string s(copy_sql);
  {
    PgResult start(PQexec(conn_.get(), s.c_str()));
    if (PQresultStatus(start.raw()) != PGRES_COPY_IN) {
      return Error(copy_sql.substr(0, 60), start.raw());
    }
  }
  // Sent in pieces of at most 1 MiB (PQputCopyData takes an int length).
  constexpr size_t kPiece = 1 << 20;
  for (size_t i = 0; i < data.size(); i += kPiece) {
    const size_t n = std::min(kPiece, data.size() - i);
    if (PQputCopyData(conn_.get(), data.data() + i, static_cast<int>(n)) != 1) {
      return Error(copy_sql.substr(0, 60), nullptr);
    }
  }
  if (PQputCopyEnd(conn_.get(), nullptr) != 1) {
    return Error(copy_sql.substr(0, 60), nullptr);
  }
  // The COPY's own result, then nullptr.
  absl::Status status = absl::OkStatus();
  while (PGresult* raw = PQgetResult(conn_.get())) {
    PgResult r(raw);
    if (status.ok() && PQresultStatus(raw) != PGRES_COMMAND_OK) {
      status = Error(copy_sql.substr(0, 60), raw);
    }
  }
  return status;
}

// ------------------------------------------------------------------ helpers

void AppendCopyText(std::string* out, std::string_view s) {
  for (char c : s) {
    switch (c) {
      case '\\':
        out->append("\\\\");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      default:
        out->push_back(c);
    }
  }
}

void AppendCopyBytea(std::string* out, std::string_view bytes) {
  out->append("\\\\x");
  for (unsigned char c : bytes) {
    out->push_back(kHexDigits[c >> 4]);
    out->push_back(kHexDigits[c & 0xf]);
  }
}

std::string TextArrayLiteral(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out.push_back(',');
    out.push_back('"');
    for (char c : values[i]) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

std::string TimestampLiteral(int64_t unix_micros) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%E6S+00",
                          absl::FromUnixMicros(unix_micros),
                          absl::UTCTimeZone());
}

std::string MicrosOf(std::string_view column) {
  return absl::StrCat("(extract(epoch FROM ", Av(column),
                      ") * 1000000)::bigint");
}

std::string RedactPostgresUrl(std::string_view url) {
  if (url.find("://") == std::string_view::npos) return "[conninfo redacted]";
  return log::RedactUrl(url);
}

}  // namespace chstream::storage::pg
