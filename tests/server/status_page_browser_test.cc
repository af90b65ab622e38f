// The status page in a real browser: starts the real chstreamd on its
// built-in simulator, loads http://<metrics_address>/ in headless Chromium
// (Debian's "chromium" package, installed by tools/setup) and checks the
// DOM the page rendered after its first refresh from /status.json: the
// companies stream is streaming with a non-zero event count. Then takes a
// screenshot the same way (an undeclared test output, status-page.png).
//
// Chromium runs without its own sandbox (--no-sandbox: it cannot create
// namespaces inside Bazel's), with HOME and the profile in TEST_TMPDIR, its
// temp files (the singleton socket, whose path must be short) in a private
// /tmp/chs-chromium-* directory removed afterwards, and /dev/shm avoided,
// so it runs under `bazel test` as is.
// It only talks to 127.0.0.1; background networking is off.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ingest/simulator/simulator.h"
#include "tests/testing/child_process.h"

namespace chstream {
namespace {

using testing::ChildProcess;
using testing::WaitUntil;

constexpr char kChromium[] = "/usr/bin/chromium";
constexpr char kChstreamd[] = "server/chstreamd";

std::string TempDir() { return std::getenv("TEST_TMPDIR"); }

// What a stream's row of the streams table shows.
struct StreamRow {
  bool found = false;
  std::string state;
  uint64_t events = 0;
  std::string last_error;  // "" for none
  std::string next_retry;  // "in 3s", "now" or "–"
};

// The text after the first `prefix` in `s` up to the next `end`; false if
// either is missing.
bool After(const std::string& s, const std::string& prefix,
           const std::string& end, std::string* out) {
  const size_t start = s.find(prefix);
  if (start == std::string::npos) return false;
  const size_t from = start + prefix.size();
  const size_t stop = s.find(end, from);
  if (stop == std::string::npos) return false;
  *out = s.substr(from, stop - from);
  return true;
}

// Reads a stream's row out of Chromium's --dump-dom output. The page marks
// it <tr data-stream="..."> with data-field cells (status_page.html).
StreamRow ParseStreamRow(const std::string& dom, const std::string& stream) {
  StreamRow row;
  const size_t start =
      dom.find(absl::StrCat("<tr data-stream=\"", stream, "\">"));
  if (start == std::string::npos) return row;
  const size_t end = dom.find("</tr>", start);
  if (end == std::string::npos) return row;
  const std::string tr = dom.substr(start, end - start);
  // Plain finds, not std::regex: GCC 12's <regex> trips
  // -Wmaybe-uninitialized under --config=asan.
  std::string badge;  // `<class>">state`
  if (After(tr, R"(data-field="state"><span class="badge )", "</span>",
            &badge)) {
    const size_t open_end = badge.find("\">");
    if (open_end != std::string::npos) row.state = badge.substr(open_end + 2);
  }
  std::string events;
  if (After(tr, R"(data-field="events" data-value=")", "\"", &events)) {
    row.found = absl::SimpleAtoi(events, &row.events);
  }
  After(tr, R"(<td class="error">)", "<", &row.last_error);
  // The last cell.
  const size_t last = tr.rfind("<td");
  const size_t text = tr.find('>', last);
  if (last != std::string::npos && text != std::string::npos) {
    row.next_retry = tr.substr(text + 1, tr.find("</td>", text) - text - 1);
  }
  return row;
}

// The text of the <tbody> of the table with this id ("" if none).
std::string TableBody(const std::string& dom, const std::string& id) {
  const size_t table = dom.find(absl::StrCat("<table id=\"", id, "\""));
  if (table == std::string::npos) return "";
  const size_t body = dom.find("<tbody>", table);
  const size_t end = dom.find("</tbody>", table);
  if (body == std::string::npos || end == std::string::npos) return "";
  return dom.substr(body, end - body);
}

class StatusPageBrowserTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(access(kChromium, X_OK), 0)
        << kChromium << " is missing: install Debian's \"chromium\" package "
        << "(tools/setup does)";
    home_ = absl::StrCat(
        TempDir(), "/home-",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(home_);
    // Chromium puts its singleton socket in TMPDIR, and TEST_TMPDIR is too
    // long for a Unix socket path (108 bytes): a short private directory.
    char tmp[] = "/tmp/chs-chromium-XXXXXX";
    ASSERT_NE(mkdtemp(tmp), nullptr) << "mkdtemp: " << errno;
    tmp_ = tmp;
  }
  void TearDown() override {
    if (!tmp_.empty()) std::filesystem::remove_all(tmp_);
  }

  // Runs headless Chromium on `url` with `extra` flags (a fresh profile per
  // run) and returns everything it printed, or "" if it did not exit.
  std::string RunChromium(const std::string& url,
                          const std::vector<std::string>& extra) {
    const std::string profile = absl::StrCat(home_, "/profile-", ++runs_);
    std::vector<std::string> args = {
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        // Console messages (script errors) go to the output too.
        "--enable-logging=stderr",
        absl::StrCat("--user-data-dir=", profile),
        // Enough virtual time for the page's first refresh (its fetches run
        // in real time; virtual time waits for them).
        "--virtual-time-budget=5000",
        "--window-size=1280,800",
    };
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(url);
    const std::string log = absl::StrCat(home_, "/chromium-", runs_, ".log");
    std::filesystem::remove(log);
    ChildProcess chromium(
        kChromium, args,
        {"PATH=/usr/bin:/bin", "HOME=" + home_, "TMPDIR=" + tmp_,
         "XDG_CONFIG_HOME=" + home_ + "/.config",
         "XDG_CACHE_HOME=" + home_ + "/.cache", "TZ=UTC", "LANG=C.UTF-8"},
        home_, log);
    EXPECT_TRUE(chromium.started());
    const int code = chromium.Wait(absl::Seconds(60));
    EXPECT_EQ(code, 0) << chromium.Output();
    return code == 0 ? chromium.Output() : "";
  }

  // Saves a screenshot of `url` as an undeclared test output `name`.
  void Screenshot(const std::string& url, const std::string& name) {
    const char* outputs = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR");
    const std::string png =
        absl::StrCat(outputs != nullptr ? outputs : TempDir(), "/", name);
    RunChromium(url, {absl::StrCat("--screenshot=", png)});
    const std::string bytes = testing::ReadFileOrEmpty(png);
    ASSERT_GT(bytes.size(), 1000u);
    EXPECT_EQ(bytes.substr(0, 8), "\x89PNG\r\n\x1a\n");
  }

  // Starts chstreamd with `args` (plus port 0 listeners and a database in
  // a directory of its own) and returns the status page's URL.
  std::string StartChstreamd(const std::vector<std::string>& args,
                             std::vector<std::string> env) {
    // A directory per test: the log is appended to, and an earlier run's
    // "serving" line would give the wrong address.
    const std::string dir = absl::StrCat(
        TempDir(), "/",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir);
    std::vector<std::string> all = {"--grpc_address=127.0.0.1:0",
                                    "--metrics_address=127.0.0.1:0",
                                    "--db_path=chstream.db"};
    all.insert(all.end(), args.begin(), args.end());
    env.push_back("PATH=/usr/bin:/bin");
    env.push_back("TZ=UTC");
    chstreamd_ = std::make_unique<ChildProcess>(kChstreamd, all, env, dir,
                                                dir + "/out.log");
    EXPECT_TRUE(chstreamd_->started());
    EXPECT_TRUE(WaitUntil(
        [&] {
          return absl::StrContains(chstreamd_->Output(), "chstreamd serving");
        },
        absl::Seconds(30)))
        << chstreamd_->Output();
    return absl::StrCat(
        "http://",
        testing::LoggedField(chstreamd_->Output(), "metrics_address"), "/");
  }

  std::unique_ptr<ChildProcess> chstreamd_;
  std::string home_;
  std::string tmp_;
  int runs_ = 0;
};

TEST_F(StatusPageBrowserTest, ShowsTheCompaniesStreamStreaming) {
  const std::string url = StartChstreamd({"--simulator_rate=50"}, {});
  ASSERT_FALSE(HasFailure());

  // Load the page until its DOM shows events arriving (the simulator starts
  // publishing a moment after chstreamd serves).
  std::string dom;
  StreamRow row;
  const bool shown = WaitUntil(
      [&] {
        dom = RunChromium(url, {"--dump-dom"});
        row = ParseStreamRow(dom, "companies");
        return row.found && row.state == "streaming" && row.events > 0;
      },
      absl::Seconds(90));
  EXPECT_TRUE(shown) << "state \"" << row.state << "\", " << row.events
                     << " events; DOM:\n"
                     << dom;
  // It came from a successful refresh, and the rest of the page is filled.
  EXPECT_THAT(dom, ::testing::HasSubstr("data-refreshes=\""));
  EXPECT_THAT(dom, ::testing::HasSubstr("<b id=\"upstream\">simulator</b>"));
  EXPECT_THAT(dom, ::testing::Not(
                       ::testing::HasSubstr("<dd id=\"store-head\">–</dd>")));
  EXPECT_THAT(dom, ::testing::ContainsRegex("class=\"badge ok\">healthy<"));
  EXPECT_EQ(row.last_error, "");
  EXPECT_EQ(row.next_retry, "–");
  EXPECT_THAT(dom, ::testing::Not(::testing::HasSubstr("Uncaught")));

  // A screenshot, taken the same way (docs/status-page.png is one).
  Screenshot(url, "status-page.png");

  EXPECT_EQ(chstreamd_->SignalAndWait(SIGTERM, absl::Seconds(10)), 0);
}

// Verifies the failure side: a stream the upstream keeps refusing shows its
// state, last error and next retry, the health issue it raises, the alert
// for its transition and the overall state.
TEST_F(StatusPageBrowserTest, ShowsAFailingStreamWithItsIssueAndAlert) {
  ingest::sim::Options sim_options;
  sim_options.keys = {"browser-test-key"};
  auto sim = ingest::sim::Simulator::Start(sim_options);
  ASSERT_TRUE(sim.ok()) << sim.status();
  (*sim)->SetFaults(
      "filings",
      ingest::sim::Faults{.fail_first_attempts = 1000000, .fail_status = 503});
  const std::string url =
      StartChstreamd({"--streams=companies,filings", "--disconnected_after=1s",
                      absl::StrCat("--upstream_url=", (*sim)->url())},
                     {"CH_STREAMING_API_KEY=browser-test-key"});
  ASSERT_FALSE(HasFailure());

  std::string dom;
  StreamRow filings;
  const bool shown = WaitUntil(
      [&] {
        dom = RunChromium(url, {"--dump-dom"});
        filings = ParseStreamRow(dom, "filings");
        return filings.found && filings.state != "streaming" &&
               !filings.state.empty() && !filings.last_error.empty() &&
               absl::StrContains(TableBody(dom, "issues"), "filings") &&
               absl::StrContains(TableBody(dom, "alerts"), "filings");
      },
      absl::Seconds(90));
  EXPECT_TRUE(shown) << "filings: state \"" << filings.state << "\", error \""
                     << filings.last_error << "\"; chstreamd:\n"
                     << chstreamd_->Output() << "\nDOM:\n"
                     << dom;
  EXPECT_THAT(filings.state,
              ::testing::AnyOf("backing off", "circuit open", "connecting"));
  EXPECT_THAT(filings.last_error, ::testing::HasSubstr("503"));
  EXPECT_THAT(filings.next_retry,
              ::testing::AnyOf(::testing::StartsWith("in "), "now"));
  EXPECT_THAT(TableBody(dom, "issues"),
              ::testing::ContainsRegex(
                  "<td>filings</td><td>(disconnected|circuit_open)</td>"));
  EXPECT_THAT(TableBody(dom, "alerts"),
              ::testing::HasSubstr("class=\"badge ok\">healthy</span> → "));
  EXPECT_THAT(
      dom, ::testing::ContainsRegex(
               "id=\"overall\" class=\"badge (warn|bad)\">(degraded|failed)<"));
  EXPECT_EQ(ParseStreamRow(dom, "companies").state, "streaming");
  EXPECT_THAT(dom, ::testing::Not(::testing::HasSubstr("Uncaught")));
  Screenshot(url, "status-page-failing.png");
  EXPECT_EQ(chstreamd_->SignalAndWait(SIGTERM, absl::Seconds(10)), 0);
}

}  // namespace
}  // namespace chstream
