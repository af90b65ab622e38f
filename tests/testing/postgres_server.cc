#include "tests/testing/postgres_server.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <postgresql/libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "base/clock.h"
#include "tests/testing/loopback.h"

namespace chstream::testing {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Tail(const std::string& text, size_t n = 2000) {
  return text.size() <= n ? text : text.substr(text.size() - n);
}

std::string Errno(absl::string_view what) {
  return absl::StrCat(what, ": ", std::strerror(errno));
}

// A port the kernel considers free right now. Another process may take it
// before the postmaster binds; StartPostmaster() then retries with a new one.
absl::StatusOr<int> FreePort() {
  int port = 0;
  absl::StatusOr<int> fd = BindLoopback(&port);
  if (!fd.ok()) return fd.status();
  ::close(*fd);
  return port;
}

// How the children drop root (initdb and postgres refuse to run as root).
enum class Drop {
  kNone,       // not root: run as ourselves
  kNamespace,  // a user namespace in which our uid appears as `uid`
  kSetuid,     // a real setuid to `uid` (no user namespaces available)
};

// The kNamespace prefix: util-linux's unshare (Essential in Debian) enters a
// new user namespace that maps `uid`/`gid` to our own (root) ids outside,
// then execs the command in the same process. The process keeps root's
// access to files outside (so the directory needs no chown and any path
// works), but inside geteuid() is `uid`, a user that exists in /etc/passwd
// (initdb looks its name up). This works inside Bazel's linux-sandbox too,
// whose own user namespace maps only uid 0, so a real setuid fails there
// with EINVAL. A separate binary rather than unshare(2) in the forked
// child: unshare(CLONE_NEWUSER) fails in a multi-threaded process, and
// under ThreadSanitizer the forked child is one (its runtime thread).
constexpr char kUnshare[] = "/usr/bin/unshare";

std::vector<std::string> UnsharePrefix(uid_t uid, gid_t gid) {
  return {kUnshare, "--user", absl::StrCat("--map-user=", uid),
          absl::StrCat("--map-group=", gid), "--"};
}

absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& args,
                            const std::string& dir, const std::string& log_path,
                            Drop drop, uid_t uid, gid_t gid, bool server);

// Whether a child can enter a user namespace here (probed once).
bool UserNamespacesWork(uid_t uid, gid_t gid) {
  if (::access(kUnshare, X_OK) != 0) return false;
  absl::StatusOr<pid_t> pid =
      Spawn({"/bin/true"}, "/", "/dev/null", Drop::kNamespace, uid, gid, false);
  if (!pid.ok()) return false;
  int status = 0;
  while (::waitpid(*pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// fork + exec of `argv` without root privileges (see Drop), stdout and
// stderr appended to `log_path`. Everything is prepared before fork():
// between fork and exec the child of a multi-threaded process may only make
// async-signal-safe calls. A `server` child gets its own process group and
// dies (SIGQUIT: immediate shutdown) with the thread that started it.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& args,
                            const std::string& dir, const std::string& log_path,
                            Drop drop, uid_t uid, gid_t gid, bool server) {
  std::vector<std::string> arg_storage;
  if (drop == Drop::kNamespace) arg_storage = UnsharePrefix(uid, gid);
  arg_storage.insert(arg_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : arg_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_storage = {"PATH=/usr/bin:/bin", "LC_ALL=C",
                                          "TZ=UTC"};
  std::vector<char*> envp;
  for (std::string& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError(Errno("fork"));
  if (pid == 0) {
    const int out =
        ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    const int in = ::open("/dev/null", O_RDONLY);
    if (out < 0 || in < 0) ::_exit(126);
    ::dup2(in, STDIN_FILENO);
    ::dup2(out, STDOUT_FILENO);
    ::dup2(out, STDERR_FILENO);
    // Don't hand the test's sockets (gRPC listeners...) to the server.
    ::close_range(3, ~0U, 0);
    sigset_t none;
    sigemptyset(&none);
    ::pthread_sigmask(SIG_SETMASK, &none, nullptr);
    for (int sig : {SIGINT, SIGTERM, SIGQUIT, SIGPIPE, SIGCHLD, SIGHUP}) {
      ::signal(sig, SIG_DFL);
    }
    if (server) ::setpgid(0, 0);
    bool dropped = true;
    if (drop == Drop::kSetuid) {
      dropped = ::setgroups(0, nullptr) == 0 && ::setgid(gid) == 0 &&
                ::setuid(uid) == 0;
    }
    if (!dropped) {
      static const char kMessage[] = "postgres_server: cannot drop root\n";
      (void)!::write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
      ::_exit(125);
    }
    // After a credential change, which clears the parent-death signal
    // (unshare's does not: the kernel ids stay the same).
    if (server) {
      ::prctl(PR_SET_PDEATHSIG, SIGQUIT);
      if (::getppid() != parent) ::_exit(124);
    }
    if (::chdir(dir.c_str()) != 0) ::_exit(123);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

// Exit status as a code (128 + signal when killed by one).
int ExitCode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Children of `pid`, from /proc (PostgreSQL backends call setsid(), so a
// process-group kill would not reach them).
std::vector<pid_t> ChildrenOf(pid_t pid) {
  std::vector<pid_t> children;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return children;
  while (dirent* entry = ::readdir(proc)) {
    int child;
    if (!absl::SimpleAtoi(entry->d_name, &child)) continue;
    const std::string stat = ReadAll(absl::StrCat("/proc/", child, "/stat"));
    // "pid (comm) state ppid ...": comm may contain spaces and parens.
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::vector<std::string> fields =
        absl::StrSplit(stat.substr(close + 1), ' ', absl::SkipEmpty());
    int ppid;
    if (fields.size() > 1 && absl::SimpleAtoi(fields[1], &ppid) &&
        ppid == pid) {
      children.push_back(child);
    }
  }
  ::closedir(proc);
  return children;
}

// True while `pid` exists and is not a zombie.
bool Alive(pid_t pid) {
  const std::string stat = ReadAll(absl::StrCat("/proc/", pid, "/stat"));
  const size_t close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return false;
  return stat[close + 2] != 'Z';
}

// Polls `done` every few milliseconds until it is true or `timeout` passes.
bool PollUntil(const std::function<bool()>& done, absl::Duration timeout) {
  const absl::Time end = Clock::Real()->Now() + timeout;
  while (!done()) {
    if (Clock::Real()->Now() > end) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

std::string PercentEncode(absl::string_view s) {
  std::string out;
  for (char c : s) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' ||
        c == '_' || c == '.' || c == '~') {
      out.push_back(c);
    } else {
      absl::StrAppend(&out,
                      absl::StrFormat("%%%02X", static_cast<unsigned char>(c)));
    }
  }
  return out;
}

// A connection that closes itself.
struct Conn {
  explicit Conn(absl::string_view uri)
      : pg(PQconnectdb(std::string(uri).c_str())) {}
  ~Conn() { PQfinish(pg); }
  absl::Status status() const {
    if (pg != nullptr && PQstatus(pg) == CONNECTION_OK) return absl::OkStatus();
    return absl::UnavailableError(absl::StrCat(
        "connect: ", pg == nullptr ? "out of memory" : PQerrorMessage(pg)));
  }
  PGconn* pg;
};

}  // namespace

PostgresServer::PostgresServer(Options options, std::string dir, int drop,
                               uid_t uid, gid_t gid)
    : options_(std::move(options)),
      dir_(std::move(dir)),
      drop_(drop),
      uid_(uid),
      gid_(gid) {}

absl::StatusOr<std::unique_ptr<PostgresServer>> PostgresServer::Start(
    const Options& options) {
  if (::access((options.bin_dir + "/postgres").c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(options.bin_dir,
                     "/postgres not found: install postgresql-15 "
                     "(tools/setup does)"));
  }
  uid_t uid = ::getuid();
  gid_t gid = ::getgid();
  Drop drop = Drop::kNone;
  if (uid == 0) {
    const passwd* user = ::getpwnam("postgres");
    if (user == nullptr) user = ::getpwnam("nobody");
    if (user == nullptr) {
      return absl::FailedPreconditionError(
          "running as root and neither user postgres nor nobody exists");
    }
    uid = user->pw_uid;
    gid = user->pw_gid;
    drop = UserNamespacesWork(uid, gid) ? Drop::kNamespace : Drop::kSetuid;
  }
  char tmpl[] = "/tmp/chstream-pg-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return absl::InternalError(Errno("mkdtemp"));
  if (drop == Drop::kSetuid && ::chown(tmpl, uid, gid) != 0) {
    const std::string error = Errno("chown");
    std::filesystem::remove_all(tmpl);
    return absl::InternalError(error);
  }
  std::unique_ptr<PostgresServer> server(
      new PostgresServer(options, tmpl, static_cast<int>(drop), uid, gid));
  absl::Status status = server->InitDb();
  if (status.ok()) status = server->StartPostmaster();
  if (!status.ok()) return status;  // the destructor cleans up
  return server;
}

PostgresServer::~PostgresServer() {
  Stop().IgnoreError();
  if (running()) Kill().IgnoreError();
  if (const char* out = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR")) {
    std::error_code ignored;
    std::filesystem::copy_file(
        dir_ + "/postgres.log",
        absl::StrCat(out, "/postgres-", port_, "-", ::getpid(), ".log"),
        std::filesystem::copy_options::overwrite_existing, ignored);
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

absl::Status PostgresServer::InitDb() {
  std::vector<std::string> args = {options_.bin_dir + "/initdb",
                                   "-D",
                                   dir_ + "/data",
                                   "-U",
                                   "postgres",
                                   "-E",
                                   "UTF8",
                                   "--no-locale",
                                   "--no-sync",
                                   "--auth-local=trust"};
  if (options_.password.empty()) {
    args.push_back("--auth-host=trust");
  } else {
    const std::string pwfile = dir_ + "/pwfile";
    {
      std::ofstream out(pwfile);
      out << options_.password << "\n";
    }
    ::chmod(pwfile.c_str(), 0644);
    args.push_back("--auth-host=scram-sha-256");
    args.push_back("--pwfile=" + pwfile);
  }
  const std::string log = dir_ + "/initdb.log";
  absl::StatusOr<pid_t> pid = Spawn(args, dir_, log, static_cast<Drop>(drop_),
                                    uid_, gid_, /*server=*/false);
  if (!pid.ok()) return pid.status();
  int status = 0;
  while (::waitpid(*pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (ExitCode(status) != 0) {
    return absl::InternalError(absl::StrCat(
        "initdb failed (exit ", ExitCode(status), "): ", Tail(ReadAll(log))));
  }
  return absl::OkStatus();
}

absl::Status PostgresServer::StartPostmaster() {
  if (running()) return absl::OkStatus();
  const bool fixed_port = port_ != 0;
  absl::Status last = absl::OkStatus();
  const absl::Time deadline = Clock::Real()->Now() + options_.start_timeout;
  // A fresh port may be taken between FreePort() and bind: try a few. After
  // a Kill(), the old backends' shared memory may take a moment to go: the
  // same port is retried until the deadline.
  for (int attempt = 0; Clock::Real()->Now() < deadline; ++attempt) {
    if (!fixed_port) {
      if (attempt >= 5) break;
      absl::StatusOr<int> port = FreePort();
      if (!port.ok()) return port.status();
      port_ = *port;
    }
    std::vector<std::string> args = {options_.bin_dir + "/postgres",
                                     "-D",
                                     dir_ + "/data",
                                     "-p",
                                     absl::StrCat(port_),
                                     "-k",
                                     dir_,
                                     "-c",
                                     "listen_addresses=127.0.0.1",
                                     "-c",
                                     "fsync=off",
                                     "-c",
                                     "synchronous_commit=on",
                                     "-c",
                                     "full_page_writes=off",
                                     "-c",
                                     "max_connections=200",
                                     "-c",
                                     "log_min_messages=warning"};
    for (const std::string& setting : options_.settings) {
      args.push_back("-c");
      args.push_back(setting);
    }
    const std::string log = dir_ + "/postgres.log";
    const size_t log_start = ReadAll(log).size();
    absl::StatusOr<pid_t> pid = Spawn(args, dir_, log, static_cast<Drop>(drop_),
                                      uid_, gid_, /*server=*/true);
    if (!pid.ok()) return pid.status();
    pid_ = *pid;
    const std::string ping =
        absl::StrCat("host=127.0.0.1 port=", port_,
                     " dbname=postgres user=postgres connect_timeout=5");
    int exit_code = -1;
    const bool ready = PollUntil(
        [&] {
          int status;
          if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            exit_code = ExitCode(status);
            return true;
          }
          // PQPING_NO_ATTEMPT can't happen; REJECT means "starting up";
          // a scram-protected server still answers OK to a ping.
          return PQping(ping.c_str()) == PQPING_OK;
        },
        deadline - Clock::Real()->Now());
    if (ready && exit_code < 0) return absl::OkStatus();
    if (exit_code < 0) {
      // Timed out while the postmaster still runs.
      ::kill(pid_, SIGQUIT);
      WaitForExit(absl::Seconds(10)).IgnoreError();
      if (running()) {
        ::kill(pid_, SIGKILL);
        WaitForExit(absl::Seconds(10)).IgnoreError();
      }
      pid_ = -1;
      return absl::DeadlineExceededError(
          absl::StrCat("postgres did not accept connections within ",
                       absl::FormatDuration(options_.start_timeout), ": ",
                       Tail(ReadAll(log).substr(log_start))));
    }
    pid_ = -1;
    last = absl::InternalError(
        absl::StrCat("postgres exited with ", exit_code,
                     " at start: ", Tail(ReadAll(log).substr(log_start))));
    if (fixed_port) absl::SleepFor(absl::Milliseconds(50));
  }
  return last.ok() ? absl::DeadlineExceededError("postgres did not start")
                   : last;
}

absl::Status PostgresServer::WaitForExit(absl::Duration timeout) {
  if (!running()) return absl::OkStatus();
  const bool exited = PollUntil(
      [&] {
        int status;
        const pid_t r = ::waitpid(pid_, &status, WNOHANG);
        return r == pid_ || (r < 0 && errno == ECHILD);
      },
      timeout);
  if (!exited) {
    return absl::DeadlineExceededError(
        absl::StrCat("postgres (pid ", pid_, ") did not exit within ",
                     absl::FormatDuration(timeout)));
  }
  pid_ = -1;
  return absl::OkStatus();
}

absl::Status PostgresServer::Stop() {
  if (!running()) return absl::OkStatus();
  // SIGINT is PostgreSQL's fast shutdown, what `pg_ctl stop -m fast` sends.
  ::kill(pid_, SIGINT);
  absl::Status status = WaitForExit(absl::Seconds(60));
  if (!status.ok()) {
    ::kill(pid_, SIGQUIT);  // immediate shutdown
    WaitForExit(absl::Seconds(10)).IgnoreError();
  }
  return status;
}

absl::Status PostgresServer::Kill() {
  if (!running()) return absl::OkStatus();
  // Freeze the postmaster so that it forks nothing new and cannot react,
  // then kill every child and the postmaster, as a machine crash would.
  ::kill(pid_, SIGSTOP);
  const std::vector<pid_t> children = ChildrenOf(pid_);
  for (pid_t child : children) ::kill(child, SIGKILL);
  ::kill(pid_, SIGKILL);
  absl::Status status = WaitForExit(absl::Seconds(10));
  if (!status.ok()) return status;
  const bool gone = PollUntil(
      [&] {
        for (pid_t child : children) {
          if (Alive(child)) return false;
        }
        return true;
      },
      absl::Seconds(10));
  if (!gone) return absl::DeadlineExceededError("backends outlived SIGKILL");
  return absl::OkStatus();
}

absl::Status PostgresServer::Restart() {
  absl::Status status = Stop();
  if (!status.ok()) return status;
  return StartPostmaster();
}

std::string PostgresServer::Log() const {
  return ReadAll(dir_ + "/postgres.log");
}

std::string PostgresServer::Uri(absl::string_view database) const {
  const std::string password =
      options_.password.empty() ? "" : ":" + PercentEncode(options_.password);
  return absl::StrCat("postgresql://postgres", password, "@127.0.0.1:", port_,
                      "/", database);
}

absl::StatusOr<std::string> PostgresServer::CreateDatabase() {
  const std::string name = absl::StrCat("t_", next_database_.fetch_add(1));
  // template0: nobody connects to it, so concurrent creations don't fail
  // with "source database is being accessed by other users".
  absl::Status status = Execute(
      Uri(), absl::StrCat("CREATE DATABASE ", name, " TEMPLATE template0"));
  if (!status.ok()) return status;
  return Uri(name);
}

absl::Status PostgresServer::Execute(absl::string_view uri,
                                     absl::string_view sql) {
  Conn conn(uri);
  if (absl::Status s = conn.status(); !s.ok()) return s;
  PGresult* result = PQexec(conn.pg, std::string(sql).c_str());
  const ExecStatusType code = PQresultStatus(result);
  absl::Status status = absl::OkStatus();
  if (code != PGRES_COMMAND_OK && code != PGRES_TUPLES_OK) {
    status = absl::InternalError(
        absl::StrCat(sql, ": ", PQresultErrorMessage(result)));
  }
  PQclear(result);
  return status;
}

absl::StatusOr<std::string> PostgresServer::QueryValue(absl::string_view uri,
                                                       absl::string_view sql) {
  Conn conn(uri);
  if (absl::Status s = conn.status(); !s.ok()) return s;
  PGresult* result = PQexec(conn.pg, std::string(sql).c_str());
  absl::StatusOr<std::string> value;
  if (PQresultStatus(result) != PGRES_TUPLES_OK) {
    value = absl::InternalError(
        absl::StrCat(sql, ": ", PQresultErrorMessage(result)));
  } else if (PQntuples(result) == 0) {
    value = absl::NotFoundError(absl::StrCat(sql, ": no row"));
  } else {
    value = std::string(PQgetvalue(result, 0, 0));
  }
  PQclear(result);
  return value;
}

absl::StatusOr<PostgresServer*> SharedPostgresServer() {
  static std::once_flag once;
  static absl::StatusOr<std::unique_ptr<PostgresServer>>* shared = nullptr;
  std::call_once(once, [] {
    shared = new absl::StatusOr<std::unique_ptr<PostgresServer>>(
        PostgresServer::Start());
    // Fast shutdown and cleanup when the test binary exits normally; the
    // parent-death signal covers a crash.
    std::atexit([] { delete shared; });
  });
  if (!shared->ok()) return shared->status();
  return shared->value().get();
}

}  // namespace chstream::testing
