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
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/child_process.h"

namespace chstream {
namespace {

using testing::ChildProcess;
using testing::WaitUntil;

constexpr char kChromium[] = "/usr/bin/chromium";
constexpr char kChstreamd[] = "server/chstreamd";

std::string TempDir() { return std::getenv("TEST_TMPDIR"); }

// What the companies row of the streams table shows.
struct CompaniesRow {
  bool found = false;
  std::string state;
  uint64_t events = 0;
};

// Reads the row out of Chromium's --dump-dom output. The page marks it
// <tr data-stream="companies"> with data-field cells (status_page.html).
CompaniesRow ParseCompaniesRow(const std::string& dom) {
  CompaniesRow row;
  const size_t start = dom.find("<tr data-stream=\"companies\">");
  if (start == std::string::npos) return row;
  const size_t end = dom.find("</tr>", start);
  if (end == std::string::npos) return row;
  const std::string tr = dom.substr(start, end - start);
  std::smatch m;
  if (std::regex_search(
          tr, m,
          std::regex(
              R"re(data-field="state"><span class="badge [a-z]+">([a-z ]+)</span>)re"))) {
    row.state = m[1];
  }
  if (std::regex_search(
          tr, m,
          std::regex(R"re(data-field="events" data-value="([0-9]+)")re"))) {
    row.found = absl::SimpleAtoi(std::string(m[1]), &row.events);
  }
  return row;
}

class StatusPageBrowserTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(access(kChromium, X_OK), 0)
        << kChromium << " is missing: install Debian's \"chromium\" package "
        << "(tools/setup does)";
    home_ = TempDir() + "/home";
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
        absl::StrCat("--user-data-dir=", profile),
        // Enough virtual time for the page's first refresh (its fetches run
        // in real time; virtual time waits for them).
        "--virtual-time-budget=5000",
        "--window-size=1280,800",
    };
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(url);
    const std::string log = absl::StrCat(home_, "/chromium-", runs_, ".log");
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

  std::string home_;
  std::string tmp_;
  int runs_ = 0;
};

TEST_F(StatusPageBrowserTest, ShowsTheCompaniesStreamStreaming) {
  const std::string dir = TempDir() + "/chstreamd";
  std::filesystem::create_directories(dir);
  ChildProcess chstreamd(
      kChstreamd,
      {"--grpc_address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
       "--db_path=chstream.db", "--simulator_rate=50"},
      {"PATH=/usr/bin:/bin", "TZ=UTC"}, dir, dir + "/out.log");
  ASSERT_TRUE(chstreamd.started());
  ASSERT_TRUE(WaitUntil(
      [&] {
        return absl::StrContains(chstreamd.Output(), "chstreamd serving");
      },
      absl::Seconds(30)))
      << chstreamd.Output();
  const std::string url = absl::StrCat(
      "http://", testing::LoggedField(chstreamd.Output(), "metrics_address"),
      "/");

  // Load the page until its DOM shows events arriving (the simulator starts
  // publishing a moment after chstreamd serves).
  std::string dom;
  CompaniesRow row;
  const bool shown = WaitUntil(
      [&] {
        dom = RunChromium(url, {"--dump-dom"});
        row = ParseCompaniesRow(dom);
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

  // A screenshot, taken the same way (docs/status-page.png is one).
  const char* outputs = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR");
  const std::string png = absl::StrCat(outputs != nullptr ? outputs : TempDir(),
                                       "/status-page.png");
  RunChromium(url, {absl::StrCat("--screenshot=", png)});
  const std::string bytes = testing::ReadFileOrEmpty(png);
  ASSERT_GT(bytes.size(), 1000u);
  EXPECT_EQ(bytes.substr(0, 8), "\x89PNG\r\n\x1a\n");

  EXPECT_EQ(chstreamd.SignalAndWait(SIGTERM, absl::Seconds(10)), 0);
}

}  // namespace
}  // namespace chstream
