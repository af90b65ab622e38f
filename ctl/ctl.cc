// File: ctl/ctl.cc
//
// See ctl.h. How backup and restore stay safe next to a running chstreamd:
//
// Backup uses SQLite's online backup API (a page-by-page copy) rather than
// VACUUM INTO, which re-inserts every row and rebuilds every index: several
// times the CPU for the same consistent result, taken from the machine
// chstreamd runs on. The copy is read inside one read transaction held on
// the source connection across all backup steps: in WAL mode a reader never
// blocks the writer, and holding the snapshot stops the backup from
// restarting each time chstreamd commits (a stepped backup without it
// restarts on every change made by another process, and never ends under
// steady ingest). The steps (kBackupStepPages) only bound how much is copied
// between progress checks. The one cost to chstreamd: checkpoints cannot
// recycle the WAL past the snapshot, so the WAL grows while the copy runs,
// and once it passes Store::Options::wal_limit_bytes (64 MB) each commit
// waits up to 1 s for a checkpoint (see storage/store.cc).
//
// Restore detects a running chstreamd with SQLite's own locks: it opens the
// target with PRAGMA locking_mode=EXCLUSIVE and BEGIN EXCLUSIVE without a
// busy timeout. Every connection chstreamd has open holds a shared lock on
// the database file, so this fails at once with SQLITE_BUSY while chstreamd
// (or any other SQLite process) has the file open. Limits: it only sees
// processes using SQLite's POSIX locks on the same host (not a network file
// system without working locks), and nothing stops a chstreamd from being
// started between the check and the rename: stop the service (systemctl
// stop) before restoring.
#include "ctl/ctl.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "base/json.h"
#include "base/status_macros.h"
#include "base/utf8.h"
#include "storage/schema.h"
#include "storage/sqlite.h"
#include "storage/store.h"

namespace chstream::ctl {
namespace {

using storage::Database;
using storage::Statement;

// 256 pages of 16 KB: 4 MB per backup step.
constexpr int kBackupStepPages = 256;
constexpr int kBusyTimeoutMs = 5000;
// At most this many integrity_check messages are kept.
constexpr int kMaxIntegrityMessages = 20;

// Debian's abseil has its own string_view type, which StrCat needs.
absl::string_view Av(std::string_view s) { return {s.data(), s.size()}; }

std::string ErrnoText(int err) { return std::strerror(err); }

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

absl::Status RemoveIfExists(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot remove ", path, ": ", ErrnoText(errno)));
  }
  return absl::OkStatus();
}

// Removes `path` and the files SQLite may keep next to it.
void RemoveDbFiles(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    RemoveIfExists(absl::StrCat(path, suffix)).IgnoreError();
  }
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

absl::Status FsyncPath(const std::string& path, bool directory) {
  const int fd = ::open(
      path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("cannot open ", path, ": ", ErrnoText(errno)));
  }
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("fsync ", path, ": ", ErrnoText(err)));
  }
  return absl::OkStatus();
}

// Renames `from` over `to` and makes the rename durable.
absl::Status DurableRename(const std::string& from, const std::string& to) {
  CHS_RETURN_IF_ERROR(FsyncPath(from, false));
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", from, " to ", to,
                                            ": ", ErrnoText(errno)));
  }
  return FsyncPath(DirName(to), true);
}

// CheckDatabase's read-only connection leaves an empty -wal and a -shm
// next to a WAL-mode file it cannot delete them from; a fresh copy nobody
// else has opened must not carry them under its final name.
absl::Status RemoveSidecars(const std::string& path) {
  CHS_RETURN_IF_ERROR(RemoveIfExists(path + "-wal"));
  return RemoveIfExists(path + "-shm");
}

// A temporary name next to `path` (same directory, so rename is atomic).
std::string TempPathFor(const std::string& path, std::string_view what) {
  return absl::StrCat(path, ".", Av(what), "-", ::getpid(), ".tmp");
}

// Copies the database `src_path` into the new file `dst_path` with the
// backup API, inside one read transaction on the source (see the file
// comment).
absl::Status CopyDatabase(const std::string& src_path,
                          const std::string& dst_path) {
  CHS_ASSIGN_OR_RETURN(Database src,
                       Database::Open(src_path, SQLITE_OPEN_READONLY));
  sqlite3_busy_timeout(src.get(), kBusyTimeoutMs);
  CHS_ASSIGN_OR_RETURN(
      Database dst,
      Database::Open(dst_path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
  // Starts the read transaction: the snapshot every step copies from.
  CHS_RETURN_IF_ERROR(src.Exec("BEGIN"));
  CHS_RETURN_IF_ERROR(
      src.QueryInt64("SELECT count(*) FROM sqlite_schema").status());
  sqlite3_backup* backup =
      sqlite3_backup_init(dst.get(), "main", src.get(), "main");
  if (backup == nullptr) {
    return dst.Error(sqlite3_errcode(dst.get()), "backup_init");
  }
  int rc;
  do {
    rc = sqlite3_backup_step(backup, kBackupStepPages);
  } while (rc == SQLITE_OK);
  const int finish_rc = sqlite3_backup_finish(backup);
  src.Exec("COMMIT").IgnoreError();
  if (rc != SQLITE_DONE) return dst.Error(rc, "backup_step");
  if (finish_rc != SQLITE_OK) return dst.Error(finish_rc, "backup_finish");
  return absl::OkStatus();
}

// One integer from `sql`, or the error recorded in `report` (so that one
// unreadable table does not hide the rest of the report).
uint64_t CountOrProblem(Database& db, std::string_view sql,
                        std::string_view what, CheckReport& report) {
  absl::StatusOr<int64_t> n = db.QueryInt64(sql);
  if (!n.ok()) {
    report.problems.push_back(
        absl::StrCat("cannot read ", Av(what), ": ", n.status().message()));
    return 0;
  }
  return static_cast<uint64_t>(*n);
}

void PrintReport(const CheckReport& r, std::ostream& out) {
  out << "path: " << r.path << "\n"
      << (r.quick ? "quick_check: " : "integrity_check: ")
      << absl::StrJoin(r.integrity, "; ") << "\n"
      << "schema_version: " << r.schema_version << " (this binary writes "
      << r.latest_schema_version << ")\n"
      << "store_id: " << (r.store_id.empty() ? "(none)" : r.store_id) << "\n"
      << "head_position: " << r.head_position << "\n"
      << "oldest_position: " << r.oldest_position << "\n"
      << "events: " << r.events << "\n"
      << "companies: " << r.companies << "\n"
      << "dead_letters: " << r.dead_letters << "\n"
      << "gaps: " << r.gaps << "\n"
      << "file_bytes: " << r.file_bytes << "\n";
  for (const std::string& p : r.problems) out << "problem: " << p << "\n";
  out << "status: " << (r.ok() ? "OK" : "NOT OK") << "\n";
}

// Opens `db_path` and takes SQLite's exclusive lock on it without waiting
// (see the file comment): fails at once, FailedPrecondition "in use by
// another process", while chstreamd (or any SQLite process) has it open.
// The lock is held until the returned connection closes. `otherwise` says
// what to do when the lock cannot be taken for another reason.
absl::StatusOr<Database> LockUnused(const std::string& db_path,
                                    std::string_view otherwise) {
  absl::StatusOr<Database> db = Database::Open(db_path, SQLITE_OPEN_READWRITE);
  absl::Status status = db.status();
  if (db.ok()) {
    sqlite3_busy_timeout(db->get(), 0);
    status = db->Exec("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE");
  }
  if (status.code() == absl::StatusCode::kUnavailable) {
    return absl::FailedPreconditionError(
        absl::StrCat(db_path,
                     " is in use by another process (is chstreamd "
                     "running? stop it first); nothing was changed"));
  }
  if (!status.ok()) {
    return absl::Status(status.code(),
                        absl::StrCat("cannot lock ", db_path,
                                     " to make sure it is not in use (",
                                     status.message(), "); ", Av(otherwise)));
  }
  return db;
}

}  // namespace

absl::StatusOr<CheckReport> CheckDatabase(const std::string& path, bool quick) {
  CHS_ASSIGN_OR_RETURN(storage::DatabaseFile file,
                       storage::InspectDatabaseFile(path, false));
  if (file.is_new) {
    return absl::NotFoundError(
        absl::StrCat(path, " does not exist or is empty"));
  }
  CheckReport r;
  r.path = path;
  r.quick = quick;
  r.schema_version = file.user_version;
  r.latest_schema_version = storage::LatestSchemaVersion();
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) r.file_bytes = st.st_size;

  CHS_ASSIGN_OR_RETURN(Database db, Database::Open(path, SQLITE_OPEN_READONLY));
  sqlite3_busy_timeout(db.get(), kBusyTimeoutMs);
  // One snapshot for everything below, however much chstreamd commits.
  CHS_RETURN_IF_ERROR(db.Exec("BEGIN"));
  {
    absl::StatusOr<Statement> st = db.Prepare(
        quick ? "PRAGMA quick_check" : "PRAGMA integrity_check", false);
    absl::Status status = st.status();
    while (status.ok()) {
      absl::StatusOr<bool> row = st->Step();
      if (!row.ok()) {
        status = row.status();
        break;
      }
      if (!*row) break;
      if (r.integrity.size() < kMaxIntegrityMessages) {
        r.integrity.emplace_back(st->ColumnText(0));
      }
    }
    if (!status.ok()) {
      r.integrity.push_back(std::string(status.message()));
    }
    if (r.integrity != std::vector<std::string>{"ok"}) {
      r.problems.push_back(absl::StrCat(
          quick ? "quick_check" : "integrity_check", " failed: ",
          r.integrity.empty() ? "no result" : r.integrity.front()));
    }
  }
  r.events = CountOrProblem(db, "SELECT count(*) FROM events", "events", r);
  r.head_position =
      CountOrProblem(db, "SELECT MAX(position) FROM events", "head", r);
  r.oldest_position =
      CountOrProblem(db, "SELECT MIN(position) FROM events", "oldest", r);
  r.companies =
      CountOrProblem(db, "SELECT count(*) FROM companies", "companies", r);
  r.dead_letters = CountOrProblem(db, "SELECT count(*) FROM dead_letters",
                                  "dead letters", r);
  if (r.schema_version >= 2) {
    r.gaps = CountOrProblem(db, "SELECT count(*) FROM gaps", "gaps", r);
  }
  if (r.schema_version >= 3) {
    absl::StatusOr<std::string> id =
        db.QueryText("SELECT store_id FROM store_identity");
    if (id.ok() && !id->empty()) {
      r.store_id = *id;
    } else {
      r.problems.push_back(
          absl::StrCat("cannot read store_id: ",
                       id.ok() ? "no row" : id.status().message()));
    }
  }
  db.Exec("COMMIT").IgnoreError();
  return r;
}

absl::StatusOr<CheckReport> Backup(const std::string& db_path,
                                   const std::string& out, bool force,
                                   bool quick) {
  if (Exists(out) && !force) {
    return absl::AlreadyExistsError(
        absl::StrCat(out, " already exists; pass --force to replace it"));
  }
  CHS_ASSIGN_OR_RETURN(storage::DatabaseFile file,
                       storage::InspectDatabaseFile(db_path, false));
  if (file.is_new) {
    return absl::NotFoundError(absl::StrCat(
        db_path, " does not exist or is empty: nothing to back up"));
  }
  const std::string tmp = TempPathFor(out, "backup");
  RemoveDbFiles(tmp);
  absl::Status status = CopyDatabase(db_path, tmp);
  absl::StatusOr<CheckReport> report =
      status.ok() ? CheckDatabase(tmp, quick) : status;
  if (report.ok() && !report->ok()) {
    report = absl::DataLossError(
        absl::StrCat("the copy failed its check (", report->problems.front(),
                     "); nothing was written to ", out));
  }
  if (report.ok()) status = RemoveSidecars(tmp);
  if (report.ok() && status.ok()) status = DurableRename(tmp, out);
  if (!report.ok() || !status.ok()) {
    RemoveDbFiles(tmp);
    if (!report.ok()) return report.status();
    return status;
  }
  report->path = out;
  return report;
}

absl::StatusOr<CheckReport> Restore(const std::string& from,
                                    const std::string& db_path, bool quick) {
  struct stat from_st, to_st;
  if (::stat(from.c_str(), &from_st) == 0 &&
      ::stat(db_path.c_str(), &to_st) == 0 && from_st.st_dev == to_st.st_dev &&
      from_st.st_ino == to_st.st_ino) {
    return absl::InvalidArgumentError(
        absl::StrCat(from, " and ", db_path, " are the same file"));
  }
  // The backup first: nothing is touched unless it is sound.
  absl::StatusOr<CheckReport> backup = CheckDatabase(from, quick);
  if (!backup.ok()) {
    return absl::Status(
        backup.status().code(),
        absl::StrCat("backup ", from, ": ", backup.status().message()));
  }
  if (!backup->ok()) {
    return absl::DataLossError(absl::StrCat(
        "backup ", from, " failed its check: ", backup->problems.front()));
  }
  // An existing target must be a chstream database (maybe a corrupt one:
  // replacing that is what restore is for), not some other file named by a
  // typo.
  absl::StatusOr<storage::DatabaseFile> target =
      storage::InspectDatabaseFile(db_path, false);
  if (!target.ok() && target.status().code() != absl::StatusCode::kDataLoss) {
    return target.status();
  }
  const bool target_exists = Exists(db_path);

  // The restored database, complete, under a temporary name.
  const std::string tmp = TempPathFor(db_path, "restore");
  RemoveDbFiles(tmp);
  auto prepare = [&]() -> absl::Status {
    CHS_RETURN_IF_ERROR(CopyDatabase(from, tmp));
    CHS_ASSIGN_OR_RETURN(Database db,
                         Database::Open(tmp, SQLITE_OPEN_READWRITE));
    // No -shm for a file nobody else can see yet.
    CHS_RETURN_IF_ERROR(db.Exec("PRAGMA locking_mode = EXCLUSIVE"));
    CHS_RETURN_IF_ERROR(storage::Migrate(db, storage::LatestSchemaVersion()));
    CHS_RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE"));
    absl::Status status = storage::ReplaceStoreId(
        db,
        "restored from a backup (chstreamctl restore): positions after "
        "the backup point may have been given to other events");
    // The backup's marker belongs to the process that was running then;
    // the new store_id already covers what it protects against.
    if (status.ok()) {
      status = db.Exec("UPDATE store_identity SET open_unsynced = 0");
    }
    if (status.ok()) status = db.Exec("COMMIT");
    if (!status.ok()) db.Exec("ROLLBACK").IgnoreError();
    return status;
  };
  absl::Status status = prepare();
  if (status.ok() && (Exists(tmp + "-wal") || Exists(tmp + "-journal"))) {
    status = absl::InternalError(
        absl::StrCat(tmp, " still has a journal after closing"));
  }
  absl::StatusOr<CheckReport> restored =
      status.ok() ? CheckDatabase(tmp, /*quick=*/true) : status;
  if (restored.ok() && !restored->ok()) {
    restored = absl::DataLossError(absl::StrCat(
        "the restored copy failed its check: ", restored->problems.front()));
  }
  status = restored.status();
  if (status.ok()) status = RemoveSidecars(tmp);
  // The restored file takes the owner and mode of the one it replaces, so
  // that a restore run as root leaves a file the service user can write.
  // (chown fails unless root; then the file is the caller's, as it would be
  // for any file the caller creates.)
  struct stat old_st;
  if (status.ok() && ::stat(db_path.c_str(), &old_st) == 0) {
    if (::chmod(tmp.c_str(), old_st.st_mode & 07777) != 0 ||
        (::chown(tmp.c_str(), old_st.st_uid, old_st.st_gid) != 0 &&
         errno != EPERM)) {
      status = absl::InternalError(
          absl::StrCat("cannot give ", tmp, " the owner and mode of ", db_path,
                       ": ", ErrnoText(errno)));
    }
  }
  if (!status.ok()) {
    RemoveDbFiles(tmp);
    return absl::Status(
        status.code(), absl::StrCat("preparing ", tmp, ": ", status.message()));
  }

  // Hold an exclusive lock on the old database while it is replaced (see
  // the file comment). `lock` is closed after the rename.
  std::optional<Database> lock;
  if (target_exists) {
    absl::StatusOr<Database> db = LockUnused(
        db_path, "stop chstreamd, move the file aside and restore again");
    if (db.ok()) {
      lock = std::move(*db);
    } else {
      status = db.status();
    }
    if (status.ok()) {
      // Folds any WAL a crashed chstreamd left into the old file and
      // deletes it, so that if the rename fails the old database is whole.
      // (It is being replaced, so a failure here is not fatal.)
      lock->Exec("COMMIT; PRAGMA journal_mode = DELETE").IgnoreError();
    }
  }
  // A stale -wal or -journal next to the new file would be replayed into
  // it; a stale -shm describes the old one.
  for (const char* suffix : {"-wal", "-shm", "-journal"}) {
    if (status.ok()) status = RemoveIfExists(absl::StrCat(db_path, suffix));
  }
  if (status.ok()) status = DurableRename(tmp, db_path);
  lock.reset();
  if (!status.ok()) {
    RemoveDbFiles(tmp);
    return status;
  }
  restored->path = db_path;
  return restored;
}

absl::StatusOr<storage::pg::SqliteImportReport> CopyToPostgres(
    const std::string& db_path, const std::string& postgres_url) {
  CHS_ASSIGN_OR_RETURN(storage::DatabaseFile file,
                       storage::InspectDatabaseFile(db_path, false));
  if (file.is_new) {
    return absl::NotFoundError(
        absl::StrCat(db_path, " does not exist or is empty: nothing to copy"));
  }
  CHS_ASSIGN_OR_RETURN(Database db,
                       LockUnused(db_path, "stop chstreamd and copy again"));
  // In EXCLUSIVE locking mode the lock outlives this transaction: it is
  // held until `db` closes, after the copy.
  CHS_RETURN_IF_ERROR(db.Exec("COMMIT"));
  CHS_RETURN_IF_ERROR(storage::Migrate(db, storage::LatestSchemaVersion()));
  return storage::pg::CopySqliteToPostgres(db, postgres_url);
}

// ------------------------------------------------------------ command line

namespace {

constexpr char kMainUsage[] =
    R"(usage: chstreamctl <command> [flags]

Maintenance of a chstream SQLite database, safe next to a running chstreamd.

commands:
  backup        consistent copy of a live database, checked before success
  restore       put a backup in place of a stopped chstreamd's database
  check         integrity, schema version, counts, head, oldest, store_id
  dead-letters  the newest rejected lines
  copy-to-postgres
                move a stopped chstreamd's database into an empty PostgreSQL
                database (same positions and store_id)

`chstreamctl <command> --help` describes a command's flags.
exit codes: 0 ok, 1 failure (or check found a problem), 2 usage error.
)";

struct Command {
  const char* name;
  const char* usage;
  // Flags taking a value, and boolean flags.
  std::vector<std::string> value_flags;
  std::vector<std::string> bool_flags;
  std::vector<std::string> required;
};

const std::vector<Command>& Commands() {
  static const auto* commands = new std::vector<Command>{
      {"backup",
       R"(usage: chstreamctl backup --db_path=X --out=Y [--force] [--quick]

Copies the database X to Y while chstreamd keeps running and ingesting: a
page copy (SQLite online backup API) of one consistent snapshot, written to a
temporary file next to Y, checked (integrity_check, schema version, head),
fsync'ed, then renamed to Y. Prints the copy's check report.

  --db_path  the live database (chstreamd's --db_path)
  --out      the backup file to write; must not exist
  --force    replace an existing Y
  --quick    check the copy with quick_check (faster: skips index checks)

exit codes: 0 ok, 1 failure (nothing is left at Y), 2 usage error.
)",
       {"db_path", "out"},
       {"force", "quick"},
       {"db_path", "out"}},
      {"restore",
       R"(usage: chstreamctl restore --from=Y --db_path=X [--quick]

Replaces the database X with the backup Y. Stop chstreamd first: restore
refuses while any process has X open (it tries an exclusive SQLite lock
without waiting). Y is checked first; X is left alone unless Y is sound. The
restored database gets a new store_id: positions after the backup point will
be given to other events, and clients resuming with expected_store_id get
FAILED_PRECONDITION and resume by timepoint. Stale X-wal, X-shm and
X-journal are removed. X must be a chstream database (or missing).

  --from     the backup file (made by chstreamctl backup)
  --db_path  the database to replace (chstreamd's --db_path)
  --quick    check the backup with quick_check instead of integrity_check

exit codes: 0 ok, 1 failure (X unchanged), 2 usage error.
)",
       {"from", "db_path"},
       {"quick"},
       {"from", "db_path"}},
      {"check",
       R"(usage: chstreamctl check --db_path=X [--quick]

Checks the database X, read-only (safe while chstreamd runs: one snapshot):
integrity_check, schema version, store_id, head and oldest positions, and
the numbers of events, companies, dead letters and gaps.

  --db_path  the database
  --quick    quick_check instead of integrity_check (skips index checks)

exit codes: 0 OK, 1 not OK (a problem is printed) or unreadable, 2 usage.
)",
       {"db_path"},
       {"quick"},
       {"db_path"}},
      {"dead-letters",
       R"(usage: chstreamctl dead-letters --db_path=X [--limit=N] [--width=W]

Prints the newest N rejected lines, newest first, one per line: received
time (UTC), stream, timepoint (or -), reason, and the line as a JSON string
cut to W bytes, with its full length. Read-only; safe while chstreamd runs.

  --db_path  the database
  --limit    how many (default 20)
  --width    bytes of each line shown (default 200)

exit codes: 0 ok, 1 failure, 2 usage error.
)",
       {"db_path", "limit", "width"},
       {},
       {"db_path"}},
      {"copy-to-postgres",
       R"(usage: chstreamctl copy-to-postgres --db_path=X --postgres_url=URL

Moves the SQLite database X into the PostgreSQL database URL, to run
chstreamd replicas on it (--postgres_url) from where X left off: every
event keeps its position and the store keeps its store_id, so clients
resume with after_position and expected_store_id as before. Companies,
stream states (timepoints), gaps, dead letters and, where the PostgreSQL
schema has them, resources are copied too; then the counts, the head and
the oldest position are compared with X before the one transaction commits.

Stop chstreamd first: the copy refuses while any process has X open, and
holds X locked until it is done. X is migrated to this binary's schema
first, as chstreamd would. URL must be an empty database (createdb), or
one holding chstream's empty tables; anything else is refused untouched,
as is a database some chstreamd is connected to. The URL is a libpq URI
(PGPASSWORD, ~/.pgpass, PGSSLMODE apply); its password is never printed.

  --db_path       the SQLite database (chstreamd's --db_path)
  --postgres_url  the PostgreSQL database (the replicas' --postgres_url)

exit codes: 0 ok, 1 failure (nothing written to URL), 2 usage error.
)",
       {"db_path", "postgres_url"},
       {},
       {"db_path", "postgres_url"}},
  };
  return *commands;
}

bool Contains(const std::vector<std::string>& v, std::string_view s) {
  for (const std::string& x : v) {
    if (x == s) return true;
  }
  return false;
}

struct Parsed {
  std::map<std::string, std::string> values;
  bool help = false;
};

// Parses "--name=value", "--name value" and "--flag". A usage error status
// names the offending argument.
absl::StatusOr<Parsed> ParseFlags(const Command& c,
                                  const std::vector<std::string>& args) {
  Parsed p;
  for (size_t i = 1; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg == "--help" || arg == "-h") {
      p.help = true;
      continue;
    }
    if (arg.substr(0, 2) != "--") {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument \"", Av(arg), "\""));
    }
    arg.remove_prefix(2);
    std::string name(arg.substr(0, arg.find('=')));
    std::optional<std::string> value;
    if (arg.find('=') != std::string_view::npos) {
      value = std::string(arg.substr(arg.find('=') + 1));
    }
    if (Contains(c.bool_flags, name)) {
      if (value.has_value() && *value != "true" && *value != "false") {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, " takes no value"));
      }
      p.values[name] = value.value_or("true");
      continue;
    }
    if (!Contains(c.value_flags, name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", name, " for ", c.name));
    }
    if (!value.has_value()) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, " needs a value"));
      }
      value = args[++i];
    }
    if (value->empty()) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " is empty"));
    }
    p.values[name] = *value;
  }
  if (p.help) return p;
  for (const std::string& name : c.required) {
    if (!p.values.count(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " is required"));
    }
  }
  return p;
}

absl::StatusOr<int64_t> PositiveFlag(const Parsed& p, const std::string& name,
                                     int64_t default_value) {
  auto it = p.values.find(name);
  if (it == p.values.end()) return default_value;
  int64_t v;
  if (!absl::SimpleAtoi(it->second, &v) || v <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", name, " must be a positive integer, got \"", it->second, "\""));
  }
  return v;
}

absl::Status PrintDeadLetters(const std::string& path, int64_t limit,
                              int64_t width, std::ostream& out) {
  CHS_ASSIGN_OR_RETURN(storage::DatabaseFile file,
                       storage::InspectDatabaseFile(path, false));
  if (file.is_new) {
    return absl::NotFoundError(
        absl::StrCat(path, " does not exist or is empty"));
  }
  CHS_ASSIGN_OR_RETURN(Database db, Database::Open(path, SQLITE_OPEN_READONLY));
  sqlite3_busy_timeout(db.get(), kBusyTimeoutMs);
  CHS_ASSIGN_OR_RETURN(
      Statement st,
      db.Prepare("SELECT received_at, stream, timepoint, reason, raw "
                 "FROM dead_letters ORDER BY id DESC LIMIT ?1",
                 false));
  st.BindInt64(1, limit);
  int n = 0;
  while (true) {
    CHS_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    ++n;
    const std::string_view raw = st.ColumnBlob(4);
    const std::string_view shown =
        TruncateUtf8(raw, static_cast<size_t>(width));
    out << FormatRfc3339(absl::FromUnixMicros(st.ColumnInt64(0))) << "  "
        << st.ColumnText(1) << "  "
        << (st.ColumnIsNull(2) ? std::string("-")
                               : absl::StrCat(st.ColumnInt64(2)))
        << "  " << JsonString(SanitizeUtf8(st.ColumnText(3))) << "  "
        << JsonString(SanitizeUtf8(shown))
        << (shown.size() < raw.size() ? "..." : "") << " (" << raw.size()
        << " bytes)\n";
  }
  if (n == 0) out << "no dead letters\n";
  return absl::OkStatus();
}

void PrintCopyReport(const storage::pg::SqliteImportReport& r,
                     std::ostream& out) {
  out << "target: " << r.target << "\n"
      << "target_schema_version: " << r.target_schema_version << "\n"
      << "store_id: " << r.store_id << (r.kept_store_id ? " (kept)" : " (new)")
      << "\n"
      << "head_position: " << r.head_position << "\n"
      << "oldest_position: " << r.oldest_position << "\n";
  for (const auto& [table, rows] : r.tables)
    out << table << ": " << rows << "\n";
  out << "bytes_sent: " << r.bytes_sent << "\n";
  for (const std::string& n : r.notes) out << "note: " << n << "\n";
}

int Fail(const absl::Status& status, std::string_view command,
         std::ostream& err) {
  err << "chstreamctl " << command << ": " << status.message() << "\n";
  return kExitFailure;
}

}  // namespace

int Run(const std::vector<std::string>& args, std::ostream& out,
        std::ostream& err) {
  if (args.empty()) {
    err << kMainUsage;
    return kExitUsage;
  }
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    out << kMainUsage;
    return kExitOk;
  }
  const Command* command = nullptr;
  for (const Command& c : Commands()) {
    if (args[0] == c.name) command = &c;
  }
  if (command == nullptr) {
    err << "chstreamctl: unknown command \"" << args[0]
        << "\" (try chstreamctl --help)\n";
    return kExitUsage;
  }
  absl::StatusOr<Parsed> parsed = ParseFlags(*command, args);
  if (!parsed.ok()) {
    err << "chstreamctl " << command->name << ": " << parsed.status().message()
        << " (try chstreamctl " << command->name << " --help)\n";
    return kExitUsage;
  }
  if (parsed->help) {
    out << command->usage;
    return kExitOk;
  }
  const auto& v = parsed->values;
  auto flag = [&](const std::string& name) {
    auto it = v.find(name);
    return it == v.end() ? std::string() : it->second;
  };
  const bool quick = flag("quick") == "true";
  const std::string name = command->name;

  if (name == "dead-letters") {
    absl::StatusOr<int64_t> limit = PositiveFlag(*parsed, "limit", 20);
    absl::StatusOr<int64_t> width = PositiveFlag(*parsed, "width", 200);
    for (const auto* s : {&limit, &width}) {
      if (!s->ok()) {
        err << "chstreamctl dead-letters: " << s->status().message() << "\n";
        return kExitUsage;
      }
    }
    absl::Status status =
        PrintDeadLetters(flag("db_path"), *limit, *width, out);
    return status.ok() ? kExitOk : Fail(status, name, err);
  }

  if (name == "copy-to-postgres") {
    absl::StatusOr<storage::pg::SqliteImportReport> copied =
        CopyToPostgres(flag("db_path"), flag("postgres_url"));
    if (!copied.ok()) return Fail(copied.status(), name, err);
    PrintCopyReport(*copied, out);
    out << "copied " << flag("db_path") << " to " << copied->target << "\n";
    return kExitOk;
  }

  absl::StatusOr<CheckReport> report;
  if (name == "check") {
    report = CheckDatabase(flag("db_path"), quick);
  } else if (name == "backup") {
    report =
        Backup(flag("db_path"), flag("out"), flag("force") == "true", quick);
  } else {
    report = Restore(flag("from"), flag("db_path"), quick);
  }
  if (!report.ok()) return Fail(report.status(), name, err);
  PrintReport(*report, out);
  if (!report->ok()) {
    err << "chstreamctl " << name << ": " << report->path
        << " is not OK: " << report->problems.front() << "\n";
    return kExitFailure;
  }
  if (name == "backup") {
    out << "backup written to " << report->path << "\n";
  } else if (name == "restore") {
    out << "restored " << flag("from") << " to " << report->path
        << " with new store_id " << report->store_id << "\n";
  }
  return kExitOk;
}

}  // namespace chstream::ctl
