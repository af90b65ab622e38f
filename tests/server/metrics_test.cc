#include "server/metrics.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace chstream::server {
namespace {

using ::chstream::testing::IsOk;
using ::testing::ContainsRegex;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

TEST(MetricsFormatTest, CounterHasHelpTypeAndValue) {
  MetricsRegistry registry;
  Counter& c = registry.AddCounter("chstream_things_total", "Things seen.");
  c.Increment();
  c.Increment(41);
  EXPECT_EQ(c.value(), 42u);
  EXPECT_EQ(registry.Render(),
            "# HELP chstream_things_total Things seen.\n"
            "# TYPE chstream_things_total counter\n"
            "chstream_things_total 42\n");
}

TEST(MetricsFormatTest, GaugeSetsAndAddsDoubles) {
  MetricsRegistry registry;
  Gauge& g = registry.AddGauge("chstream_level", "A level.",
                               {{"stream", "companies"}});
  g.Set(1.5);
  g.Add(-2);
  EXPECT_DOUBLE_EQ(g.value(), -0.5);
  EXPECT_EQ(registry.Render(),
            "# HELP chstream_level A level.\n"
            "# TYPE chstream_level gauge\n"
            "chstream_level{stream=\"companies\"} -0.5\n");
}

TEST(MetricsFormatTest, FormatsSpecialAndLargeValues) {
  EXPECT_EQ(FormatMetricValue(0), "0");
  EXPECT_EQ(FormatMetricValue(3), "3");
  EXPECT_EQ(FormatMetricValue(-7), "-7");
  EXPECT_EQ(FormatMetricValue(0.1), "0.1");
  EXPECT_EQ(FormatMetricValue(0.0025), "0.0025");
  EXPECT_EQ(FormatMetricValue(1234567890123.0), "1234567890123");
  EXPECT_EQ(FormatMetricValue(1e20), "1e+20");
  EXPECT_EQ(FormatMetricValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatMetricValue(-std::numeric_limits<double>::infinity()),
            "-Inf");
  EXPECT_EQ(FormatMetricValue(std::numeric_limits<double>::quiet_NaN()), "NaN");
  // Shortest round-trip text, not 6 significant digits.
  EXPECT_EQ(FormatMetricValue(1.0000001), "1.0000001");
}

TEST(MetricsFormatTest, EscapesLabelValuesAndHelp) {
  EXPECT_EQ(EscapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(EscapeHelp("a\\b\"c\nd"), "a\\\\b\"c\\nd");

  MetricsRegistry registry;
  registry
      .AddGauge("chstream_g", "Help with \\ and\nnewline.",
                {{"path", "C:\\dir"}, {"quote", "say \"hi\"\nbye"}})
      .Set(1);
  EXPECT_EQ(
      registry.Render(),
      "# HELP chstream_g Help with \\\\ and\\nnewline.\n"
      "# TYPE chstream_g gauge\n"
      "chstream_g{path=\"C:\\\\dir\",quote=\"say \\\"hi\\\"\\nbye\"} 1\n");
}

// Verifies the "le" semantics (a value equal to a bound is in that bucket),
// that buckets are cumulative, and +Inf == _count.
TEST(MetricsFormatTest, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  MetricsRegistry registry;
  Histogram& h = registry.AddHistogram("chstream_latency_seconds", "Latency.",
                                       {0.1, 0.5, 1}, {{"op", "commit"}});
  for (double v : {0.05, 0.1, 0.3, 0.5, 0.7, 2.0}) h.Observe(v);
  h.Observe(std::numeric_limits<double>::quiet_NaN());  // ignored
  EXPECT_EQ(registry.Render(),
            "# HELP chstream_latency_seconds Latency.\n"
            "# TYPE chstream_latency_seconds histogram\n"
            "chstream_latency_seconds_bucket{op=\"commit\",le=\"0.1\"} 2\n"
            "chstream_latency_seconds_bucket{op=\"commit\",le=\"0.5\"} 4\n"
            "chstream_latency_seconds_bucket{op=\"commit\",le=\"1\"} 5\n"
            "chstream_latency_seconds_bucket{op=\"commit\",le=\"+Inf\"} 6\n"
            "chstream_latency_seconds_sum{op=\"commit\"} 3.65\n"
            "chstream_latency_seconds_count{op=\"commit\"} 6\n");
  HistogramData data = h.Snapshot();
  EXPECT_THAT(data.counts, ElementsAre(2, 2, 1, 1));
}

TEST(MetricsFormatTest, HistogramWithoutLabelsAndDurations) {
  MetricsRegistry registry;
  Histogram& h = registry.AddHistogram("chstream_d_seconds", "D.", {1});
  h.ObserveDuration(absl::Milliseconds(250));
  EXPECT_EQ(registry.Render(),
            "# HELP chstream_d_seconds D.\n"
            "# TYPE chstream_d_seconds histogram\n"
            "chstream_d_seconds_bucket{le=\"1\"} 1\n"
            "chstream_d_seconds_bucket{le=\"+Inf\"} 1\n"
            "chstream_d_seconds_sum 0.25\n"
            "chstream_d_seconds_count 1\n");
}

// Verifies one HELP/TYPE per family, families ordered by name and series
// by labels whatever the registration order, and collected samples merged
// into a registered family.
TEST(MetricsFormatTest, GroupsFamiliesInDeterministicOrder) {
  MetricsRegistry registry;
  registry.AddCounter("chstream_b_total", "B.", {{"k", "2"}}).Increment(2);
  registry.AddGauge("chstream_a", "A.").Set(7);
  registry.AddCounter("chstream_b_total", "B.", {{"k", "1"}}).Increment(1);
  registry.AddCollector([](Collection& out) {
    out.AddCounter("chstream_b_total", "B.", {{"k", "0"}}, 5);
    out.AddGauge("chstream_c", "C.", {}, 3);
  });
  EXPECT_EQ(registry.Render(),
            "# HELP chstream_a A.\n"
            "# TYPE chstream_a gauge\n"
            "chstream_a 7\n"
            "# HELP chstream_b_total B.\n"
            "# TYPE chstream_b_total counter\n"
            "chstream_b_total{k=\"0\"} 5\n"
            "chstream_b_total{k=\"1\"} 1\n"
            "chstream_b_total{k=\"2\"} 2\n"
            "# HELP chstream_c C.\n"
            "# TYPE chstream_c gauge\n"
            "chstream_c 3\n");
}

TEST(MetricsRegistryTest, EmptyRegistryRendersNothing) {
  MetricsRegistry registry;
  EXPECT_EQ(registry.Render(), "");
}

TEST(MetricsRegistryTest, SameNameAndLabelsReturnSameMetric) {
  MetricsRegistry registry;
  Counter& a = registry.AddCounter("chstream_x_total", "X.", {{"k", "v"}});
  Counter& b = registry.AddCounter("chstream_x_total", "X.", {{"k", "v"}});
  Counter& c = registry.AddCounter("chstream_x_total", "X.", {{"k", "w"}});
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &c);
  Histogram& h1 = registry.AddHistogram("chstream_h", "H.", {1, 2});
  Histogram& h2 = registry.AddHistogram("chstream_h", "H.", {1, 2});
  EXPECT_EQ(&h1, &h2);
}

TEST(MetricsRegistryTest, CollectorsRunAtEveryRender) {
  MetricsRegistry registry;
  int calls = 0;
  registry.AddCollector([&calls](Collection& out) {
    ++calls;
    out.AddGauge("chstream_calls", "Calls.", {}, calls);
  });
  EXPECT_THAT(registry.Render(), HasSubstr("chstream_calls 1\n"));
  EXPECT_THAT(registry.Render(), HasSubstr("chstream_calls 2\n"));
  EXPECT_EQ(calls, 2);
}

// Verifies that a broken collected sample is dropped (never rendered as
// invalid text) while the rest of the scrape still works.
TEST(MetricsRegistryTest, DropsInvalidOrConflictingCollectedSamples) {
  std::vector<std::string> logs;
  log::SetSinkForTest([&logs](std::string_view l) { logs.emplace_back(l); });
  MetricsRegistry registry;
  registry.AddGauge("chstream_registered", "R.").Set(1);
  registry.AddCollector([](Collection& out) {
    out.AddCounter("chstream_registered", "R.", {}, 5);  // type conflict
    out.AddGauge("chstream_ok", "Ok.", {{"k", "a"}}, 1);
    out.AddGauge("chstream_ok", "Ok.", {{"k", "a"}}, 2);      // repeated
    out.AddGauge("chstream_ok", "Ok.", {{"other", "b"}}, 3);  // names
    out.AddGauge("chstream_ok", "Different help.", {{"k", "c"}}, 4);
    out.AddGauge("bad-name", "Bad.", {}, 1);
    out.AddGauge("chstream_bad_label", "Bad.", {{"__x", "1"}}, 1);
    out.AddCounter("chstream_no_suffix", "Bad.", {}, 1);
    out.AddHistogram("chstream_bad_hist", "Bad.", {}, {{1, 0.5}, {1, 1, 1}, 0});
    out.AddHistogram("chstream_short_hist", "Bad.", {}, {{1}, {1}, 0});
  });
  const std::string text = registry.Render();
  log::SetSinkForTest(nullptr);
  EXPECT_EQ(text,
            "# HELP chstream_ok Ok.\n"
            "# TYPE chstream_ok gauge\n"
            "chstream_ok{k=\"a\"} 1\n"
            "# HELP chstream_registered R.\n"
            "# TYPE chstream_registered gauge\n"
            "chstream_registered 1\n");
  EXPECT_THAT(logs, Not(IsEmpty()));
  // Logged once per family, not at every scrape.
  const size_t logged = logs.size();
  log::SetSinkForTest([&logs](std::string_view l) { logs.emplace_back(l); });
  registry.Render();
  log::SetSinkForTest(nullptr);
  EXPECT_EQ(logs.size(), logged);
}

TEST(MetricsRegistryTest, ValidatesNames) {
  EXPECT_TRUE(IsValidMetricName("chstream_a:b_1"));
  EXPECT_TRUE(IsValidMetricName("_x"));
  EXPECT_FALSE(IsValidMetricName(""));
  EXPECT_FALSE(IsValidMetricName("1abc"));
  EXPECT_FALSE(IsValidMetricName("a-b"));
  EXPECT_FALSE(IsValidMetricName("a b"));
  EXPECT_TRUE(IsValidLabelName("stream"));
  EXPECT_TRUE(IsValidLabelName("_a1"));
  EXPECT_FALSE(IsValidLabelName("__name__"));
  EXPECT_FALSE(IsValidLabelName("a:b"));
  EXPECT_FALSE(IsValidLabelName("1a"));
  EXPECT_FALSE(IsValidLabelName(""));
}

using MetricsRegistryDeathTest = ::testing::Test;

TEST(MetricsRegistryDeathTest, RejectsProgrammingErrorsAtRegistration) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  MetricsRegistry registry;
  EXPECT_DEATH(registry.AddGauge("bad name", "X."), "invalid metric name");
  EXPECT_DEATH(registry.AddCounter("chstream_events", "X."), "_total");
  EXPECT_DEATH(registry.AddGauge("chstream_g", "X.", {{"a", "1"}, {"a", "2"}}),
               "repeated label");
  EXPECT_DEATH(registry.AddHistogram("chstream_h", "X.", {1}, {{"le", "1"}}),
               "le");
  EXPECT_DEATH(registry.AddHistogram("chstream_h", "X.", {2, 1}),
               "strictly increasing");
  registry.AddGauge("chstream_taken", "X.", {{"k", "v"}});
  EXPECT_DEATH(registry.AddHistogram("chstream_taken", "X.", {1}, {{"k", "v"}}),
               "another type");
  EXPECT_DEATH(registry.AddGauge("chstream_taken", "Y.", {{"k", "v"}}),
               "another help");
  EXPECT_DEATH(registry.AddGauge("chstream_taken", "X.", {{"j", "v"}}),
               "other label names");
  registry.AddHistogram("chstream_hist", "X.", {1, 2});
  EXPECT_DEATH(registry.AddHistogram("chstream_hist", "X.", {1, 3}),
               "other bucket bounds");
}

TEST(MetricsRegistryTest, ConcurrentUpdatesAreNotLost) {
  MetricsRegistry registry;
  Counter& c = registry.AddCounter("chstream_n_total", "N.");
  Gauge& g = registry.AddGauge("chstream_g", "G.");
  Histogram& h = registry.AddHistogram("chstream_h", "H.", {0.5});
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        c.Increment();
        g.Add(1);
        h.Observe(i % 2 == 0 ? 0.25 : 1.0);
      }
    });
  }
  // Scrapes while the writers run must not crash or tear lines.
  for (int i = 0; i < 20; ++i) {
    EXPECT_THAT(registry.Render(), HasSubstr("# TYPE chstream_h histogram\n"));
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(c.value(), uint64_t{kThreads * kPerThread});
  EXPECT_DOUBLE_EQ(g.value(), kThreads * kPerThread);
  HistogramData d = h.Snapshot();
  EXPECT_THAT(d.counts, ElementsAre(kThreads * kPerThread / 2,
                                    kThreads * kPerThread / 2));
  EXPECT_DOUBLE_EQ(d.sum, kThreads * kPerThread / 2 * 1.25);
}

TEST(MetricsBucketsTest, ExponentialAndDefault) {
  EXPECT_THAT(ExponentialBuckets(1, 2, 4), ElementsAre(1, 2, 4, 8));
  const std::vector<double> d = DefaultDurationBuckets();
  ASSERT_FALSE(d.empty());
  EXPECT_DOUBLE_EQ(d.front(), 0.001);
  EXPECT_DOUBLE_EQ(d.back(), 60);
  EXPECT_TRUE(std::is_sorted(d.begin(), d.end()));
}

// A fake /proc tree in TEST_TMPDIR.
class ProcessStatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = absl::StrCat(
        std::getenv("TEST_TMPDIR"), "/proc_",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_EQ(mkdir(root_.c_str(), 0755), 0);
    ASSERT_EQ(mkdir((root_ + "/self").c_str(), 0755), 0);
    ASSERT_EQ(mkdir((root_ + "/self/fd").c_str(), 0755), 0);
  }
  void Write(const std::string& rel, const std::string& content) {
    std::ofstream(root_ + "/" + rel) << content;
  }
  void WriteAll() {
    // comm "(my) proc)" has spaces and parentheses: fields are counted
    // after the last ')'. utime=300 stime=100 threads=9 starttime=500
    // vsize=123456789 rss=1000 pages.
    Write("self/stat",
          "4242 ((my) proc)) S 1 4242 4242 0 -1 4194560 100 0 0 0 300 100 0 "
          "0 20 0 9 0 500 123456789 1000 18446744073709551615 1 1 0 0 0 0 0 "
          "0 0 0 0 0 17 0 0 0 0 0 0\n");
    Write("stat", "cpu  1 2 3 4\nintr 5\nbtime 1700000000\nprocesses 9\n");
    Write("self/limits",
          "Limit                     Soft Limit           Hard Limit           "
          "Units     \n"
          "Max cpu time              unlimited            unlimited            "
          "seconds   \n"
          "Max open files            1024                 524288               "
          "files     \n");
    for (const char* fd : {"0", "1", "2", "7"})
      Write(std::string("self/fd/") + fd, "");
  }
  std::string root_;
};

TEST_F(ProcessStatsTest, ParsesProcFiles) {
  WriteAll();
  absl::StatusOr<ProcessStats> stats = ReadProcessStats(root_);
  ASSERT_THAT(stats, IsOk());
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  EXPECT_DOUBLE_EQ(stats->cpu_seconds, 400 / ticks);
  EXPECT_EQ(stats->threads, 9u);
  EXPECT_EQ(stats->virtual_memory_bytes, 123456789u);
  EXPECT_EQ(stats->resident_memory_bytes, 1000 * page);
  EXPECT_DOUBLE_EQ(stats->start_time_seconds, 1700000000 + 500 / ticks);
  EXPECT_EQ(stats->open_fds, 4u);
  EXPECT_EQ(stats->max_fds, 1024u);
}

TEST_F(ProcessStatsTest, RendersProcessFamilies) {
  WriteAll();
  MetricsRegistry registry;
  RegisterProcessMetrics(registry, root_);
  const std::string text = registry.Render();
  EXPECT_THAT(text,
              HasSubstr("# TYPE chstream_process_cpu_seconds_total counter\n"));
  EXPECT_THAT(text, HasSubstr("\nchstream_process_open_fds 4\n"));
  EXPECT_THAT(text, HasSubstr("\nchstream_process_max_fds 1024\n"));
  EXPECT_THAT(text, HasSubstr("\nchstream_process_threads 9\n"));
  EXPECT_THAT(text,
              HasSubstr("\nchstream_process_virtual_memory_bytes 123456789\n"));
  EXPECT_THAT(
      text, HasSubstr(absl::StrCat("\nchstream_process_resident_memory_bytes ",
                                   1000 * sysconf(_SC_PAGESIZE), "\n")));
  EXPECT_THAT(text,
              ContainsRegex("\nchstream_process_start_time_seconds 17000000"));
}

TEST_F(ProcessStatsTest, MissingOrMalformedProcExportsNothing) {
  EXPECT_FALSE(ReadProcessStats(root_ + "/nonexistent").ok());
  Write("self/stat", "4242 (x) S 1 2\n");
  Write("stat", "btime 1700000000\n");
  EXPECT_FALSE(ReadProcessStats(root_).ok());
  MetricsRegistry registry;
  RegisterProcessMetrics(registry, root_);
  EXPECT_EQ(registry.Render(), "");
}

TEST(RealProcessStatsTest, ReadsThisProcess) {
  absl::StatusOr<ProcessStats> before = ReadProcessStats();
  ASSERT_THAT(before, IsOk());
  EXPECT_GT(before->resident_memory_bytes, 0u);
  EXPECT_GT(before->virtual_memory_bytes, before->resident_memory_bytes);
  EXPECT_GE(before->threads, 1u);
  EXPECT_GT(before->max_fds, 0u);
  const double now = absl::ToUnixSeconds(Clock::Real()->Now());
  EXPECT_LE(before->start_time_seconds, now + 1);
  EXPECT_GT(before->start_time_seconds, now - 3600);

  std::vector<int> fds;
  for (int i = 0; i < 3; ++i) fds.push_back(open("/dev/null", O_RDONLY));
  absl::StatusOr<ProcessStats> after = ReadProcessStats();
  for (int fd : fds) close(fd);
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(after->open_fds, before->open_fds + 3);
}

}  // namespace
}  // namespace chstream::server
