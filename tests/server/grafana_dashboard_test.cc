// deploy/grafana/chstream.json against the real chstreamd: the dashboard is
// importable as is (a Prometheus data source variable, unique panel ids),
// and every metric name its PromQL uses (panel targets and template
// variable queries) is exported on a live /metrics of chstreamd following a
// simulator that ends connections, so the labelled-on-demand families
// (reconnect causes) exist too. The alert rules in deploy/ are checked by
// promtool in //deploy:deploy_check_test.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <signal.h>

#include <cctype>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ingest/simulator/simulator.h"
#include "tests/server/metrics_http_client.h"
#include "tests/testing/child_process.h"

namespace chstream {
namespace {

using testing::ChildProcess;
using ::testing::IsSupersetOf;
using ::testing::UnorderedElementsAre;
using testing::WaitUntil;

constexpr char kDashboard[] = "deploy/grafana/chstream.json";
constexpr char kChstreamd[] = "server/chstreamd";
constexpr char kKey[] = "grafana-test-key";

bool IsIdentStart(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':';
}
bool IsIdent(char c) {
  return IsIdentStart(c) || std::isdigit(static_cast<unsigned char>(c));
}

// Skips from an opening bracket at `i` to just past its match.
size_t SkipBalanced(absl::string_view s, size_t i, char open, char close) {
  int depth = 0;
  for (; i < s.size(); ++i) {
    if (s[i] == '"' || s[i] == '\'') {  // strings may hold brackets
      const char q = s[i];
      for (++i; i < s.size() && s[i] != q; ++i) {
        if (s[i] == '\\') ++i;
      }
    } else if (s[i] == open) {
      ++depth;
    } else if (s[i] == close && --depth == 0) {
      return i + 1;
    }
  }
  return s.size();
}

// The metric names a PromQL expression selects: identifiers that are not
// functions or aggregations (followed by "("), keywords, label names (in
// {...} matchers and by/without/on/ignoring/group_*(...) lists), durations
// ([...]), strings, numbers or Grafana variables ($x, ${x}).
std::set<std::string> PromqlMetricNames(absl::string_view expr) {
  static const std::set<absl::string_view> kKeywords = {
      "and", "or", "unless", "bool", "offset", "by", "without", "on",
      "ignoring", "group_left", "group_right", "inf", "nan", "atan2",
      // Aggregations, which may put "by (...)" before their "(".
      "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
      "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"};
  static const std::set<absl::string_view> kLabelLists = {
      "by", "without", "on", "ignoring", "group_left", "group_right"};
  std::set<std::string> names;
  size_t i = 0;
  while (i < expr.size()) {
    const char c = expr[i];
    if (c == '{') {
      i = SkipBalanced(expr, i, '{', '}');
    } else if (c == '[') {
      i = SkipBalanced(expr, i, '[', ']');
    } else if (c == '"' || c == '\'' || c == '`') {
      size_t j = i + 1;
      while (j < expr.size() && expr[j] != c) j += expr[j] == '\\' ? 2 : 1;
      i = j + 1;
    } else if (c == '$') {  // $var, ${var}, $__rate_interval
      ++i;
      if (i < expr.size() && expr[i] == '{') {
        i = SkipBalanced(expr, i, '{', '}');
      } else {
        while (i < expr.size() && IsIdent(expr[i])) ++i;
      }
    } else if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') {
      while (i < expr.size() &&
             (IsIdent(expr[i]) || expr[i] == '.' ||
              ((expr[i] == '-' || expr[i] == '+') &&
               (expr[i - 1] == 'e' || expr[i - 1] == 'E')))) {
        ++i;
      }
    } else if (IsIdentStart(c)) {
      const size_t start = i;
      while (i < expr.size() && IsIdent(expr[i])) ++i;
      const std::string word(expr.substr(start, i - start));
      size_t next = i;
      while (next < expr.size() &&
             std::isspace(static_cast<unsigned char>(expr[next]))) {
        ++next;
      }
      const bool call = next < expr.size() && expr[next] == '(';
      if (kLabelLists.count(word) > 0) {
        if (call) i = SkipBalanced(expr, next, '(', ')');
      } else if (!call && kKeywords.count(word) == 0) {
        names.insert(word);
      }
    } else {
      ++i;
    }
  }
  return names;
}

// The metric selector of a Grafana template query: "label_values(m{...},
// label)" selects m; "label_values(label)" selects nothing; anything else is
// PromQL.
std::set<std::string> TemplateQueryMetricNames(absl::string_view query) {
  constexpr absl::string_view kLabelValues = "label_values(";
  if (!absl::StartsWith(query, kLabelValues)) return PromqlMetricNames(query);
  absl::string_view args = query.substr(kLabelValues.size());
  // The top-level comma separates the selector from the label.
  int depth = 0;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == '{' || args[i] == '(') ++depth;
    if (args[i] == '}' || args[i] == ')') --depth;
    if (args[i] == ',' && depth == 0) {
      return PromqlMetricNames(args.substr(0, i));
    }
  }
  return {};
}

// What a /metrics text exports: sample names and typed family names.
struct Exposition {
  std::set<std::string> samples;
  std::map<std::string, std::string> families;  // name -> type

  explicit Exposition(const std::string& text) {
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      if (absl::StartsWith(line, "# TYPE ")) {
        std::vector<std::string> parts = absl::StrSplit(line, ' ');
        if (parts.size() == 4) families[parts[2]] = parts[3];
      } else if (!line.empty() && line[0] != '#') {
        samples.insert(std::string(line.substr(0, line.find_first_of("{ "))));
      }
    }
  }

  // A name PromQL may select: a sample name, a family, or a histogram's
  // _bucket/_sum/_count (a summary's _sum/_count) series of a family.
  bool Has(const std::string& name) const {
    if (samples.count(name) > 0) return true;
    // A typed family without samples yet; a histogram has no bare series.
    if (auto it = families.find(name);
        it != families.end() && it->second != "histogram") {
      return true;
    }
    for (const auto& [suffix, types] :
         std::vector<std::pair<std::string, std::set<std::string>>>{
             {"_bucket", {"histogram"}},
             {"_sum", {"histogram", "summary"}},
             {"_count", {"histogram", "summary"}}}) {
      if (absl::EndsWith(name, suffix)) {
        auto it = families.find(name.substr(0, name.size() - suffix.size()));
        if (it != families.end() && types.count(it->second) > 0) return true;
      }
    }
    return false;
  }
};

TEST(PromqlMetricNamesTest, FindsSelectorsOnly) {
  EXPECT_THAT(
      PromqlMetricNames("sum by (stream) (rate(a_total{stream=~\"$stream\", "
                        "x=\"b(c) d\"}[$__rate_interval]))"),
      UnorderedElementsAre("a_total"));
  EXPECT_THAT(PromqlMetricNames("histogram_quantile(0.99, sum by (le) "
                                "(rate(h_seconds_bucket[5m])))"),
              UnorderedElementsAre("h_seconds_bucket"));
  EXPECT_THAT(PromqlMetricNames("x / on(stream) group_left(state) y offset "
                                "5m > bool 1e-3 and z unless w or v == 1"),
              UnorderedElementsAre("x", "y", "z", "w", "v"));
  EXPECT_THAT(PromqlMetricNames("max without (instance, job) (up) * ${f}"),
              UnorderedElementsAre("up"));
  EXPECT_THAT(TemplateQueryMetricNames("label_values(m{i=~\"$i\"}, stream)"),
              UnorderedElementsAre("m"));
  EXPECT_THAT(TemplateQueryMetricNames("label_values(instance)"),
              ::testing::IsEmpty());
}

TEST(ExpositionTest, AcceptsHistogramSeriesAndRejectsUnknownNames) {
  const Exposition e(
      "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n"
      "# TYPE c_total counter\n# TYPE s summary\n");
  EXPECT_TRUE(e.Has("h_bucket"));
  EXPECT_TRUE(e.Has("h_count"));
  EXPECT_TRUE(e.Has("c_total"));  // typed, no sample yet
  EXPECT_TRUE(e.Has("s_sum"));
  EXPECT_FALSE(e.Has("s_bucket"));  // summaries have no buckets
  EXPECT_FALSE(e.Has("c_total_count"));
  EXPECT_FALSE(e.Has("h"));  // no sample has the bare histogram name
  EXPECT_FALSE(e.Has("missing_total"));
}

// Every "expr" string (panel targets) and template "query" under `v`.
void CollectQueries(const google::protobuf::Value& v, bool in_templating,
                    std::vector<std::string>* exprs,
                    std::vector<std::string>* template_queries) {
  if (v.has_list_value()) {
    for (const auto& item : v.list_value().values()) {
      CollectQueries(item, in_templating, exprs, template_queries);
    }
  }
  if (!v.has_struct_value()) return;
  for (const auto& [key, field] : v.struct_value().fields()) {
    if (key == "expr" && field.has_string_value()) {
      exprs->push_back(field.string_value());
    } else if (in_templating && key == "query" && field.has_string_value() &&
               field.string_value() != "prometheus") {
      template_queries->push_back(field.string_value());
    } else {
      CollectQueries(field, in_templating || key == "templating", exprs,
                     template_queries);
    }
  }
}

google::protobuf::Value LoadDashboard() {
  const std::string json = testing::ReadFileOrEmpty(kDashboard);
  google::protobuf::Value dashboard;
  EXPECT_TRUE(
      google::protobuf::util::JsonStringToMessage(json, &dashboard).ok())
      << kDashboard << " is not JSON";
  return dashboard;
}

// Verifies what Grafana's import needs: a schemaVersion, a uid, the
// Prometheus data source as a variable that every panel uses, unique ids.
TEST(GrafanaDashboardTest, IsImportable) {
  const google::protobuf::Value dashboard = LoadDashboard();
  const auto& fields = dashboard.struct_value().fields();
  ASSERT_TRUE(fields.contains("schemaVersion"));
  EXPECT_GE(fields.at("schemaVersion").number_value(), 30);
  EXPECT_FALSE(fields.at("uid").string_value().empty());
  EXPECT_FALSE(fields.at("title").string_value().empty());
  bool has_ds_variable = false;
  for (const auto& var : fields.at("templating")
                             .struct_value()
                             .fields()
                             .at("list")
                             .list_value()
                             .values()) {
    const auto& f = var.struct_value().fields();
    if (f.at("name").string_value() == "DS_PROMETHEUS") {
      has_ds_variable = f.at("type").string_value() == "datasource" &&
                        f.at("query").string_value() == "prometheus";
    }
  }
  EXPECT_TRUE(has_ds_variable);
  std::set<double> ids;
  int panels = 0;
  for (const auto& p : fields.at("panels").list_value().values()) {
    const auto& f = p.struct_value().fields();
    EXPECT_TRUE(ids.insert(f.at("id").number_value()).second)
        << "duplicate panel id " << f.at("id").number_value();
    if (f.at("type").string_value() == "row") continue;
    ++panels;
    EXPECT_EQ(
        f.at("datasource").struct_value().fields().at("uid").string_value(),
        "${DS_PROMETHEUS}")
        << f.at("title").string_value();
    EXPECT_GT(f.at("targets").list_value().values_size(), 0)
        << f.at("title").string_value();
  }
  EXPECT_GE(panels, 9);
}

TEST(GrafanaDashboardTest, EveryMetricExistsOnALiveChstreamd) {
  std::vector<std::string> exprs, template_queries;
  CollectQueries(LoadDashboard(), false, &exprs, &template_queries);
  std::map<std::string, std::string> used;  // name -> an expression using it
  for (const std::string& e : exprs) {
    for (const std::string& n : PromqlMetricNames(e)) used.emplace(n, e);
  }
  for (const std::string& q : template_queries) {
    for (const std::string& n : TemplateQueryMetricNames(q)) used.emplace(n, q);
  }
  std::set<std::string> names;
  for (const auto& [n, e] : used) names.insert(n);
  // The panels the dashboard promises.
  EXPECT_THAT(names, IsSupersetOf({
                         "chstream_ingest_stream_state",
                         "chstream_ingest_events_total",
                         "chstream_ingest_lag_seconds",
                         "chstream_ingest_reconnect_causes_total",
                         "chstream_writer_commit_duration_seconds_bucket",
                         "chstream_writer_queue_depth",
                         "chstream_subscribers",
                         "chstream_replay_pages_read_total",
                         "chstream_process_resident_memory_bytes",
                     }));

  // chstreamd following a simulator that ends every connection after 20
  // events, so that reconnects by cause are exported.
  ingest::sim::Options sim_options;
  sim_options.keys = {kKey};
  sim_options.companies_rate = 200;
  sim_options.faults.close_after_events = 20;
  sim_options.faults.close_style = ingest::sim::CloseStyle::kClean;
  auto sim = ingest::sim::Simulator::Start(sim_options);
  ASSERT_TRUE(sim.ok()) << sim.status();
  const std::string dir = std::string(std::getenv("TEST_TMPDIR")) + "/d";
  std::filesystem::create_directories(dir);
  ChildProcess chstreamd(
      kChstreamd,
      {"--grpc_address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
       absl::StrCat("--upstream_url=", (*sim)->url()), "--db_path=chstream.db"},
      {"PATH=/usr/bin:/bin", "TZ=UTC",
       absl::StrCat("CH_STREAMING_API_KEY=", kKey)},
      dir, dir + "/out.log");
  ASSERT_TRUE(chstreamd.started());
  ASSERT_TRUE(WaitUntil(
      [&] {
        return absl::StrContains(chstreamd.Output(), "chstreamd serving");
      },
      absl::Seconds(30)))
      << chstreamd.Output();
  const std::string address =
      testing::LoggedField(chstreamd.Output(), "metrics_address");
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port))
      << address;
  std::string metrics;
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto r = server::testing::HttpRequest(port, "GET", "/metrics");
        metrics = r.ok() ? r->body : "";
        return absl::StrContains(metrics,
                                 "chstream_ingest_reconnect_causes_total{");
      },
      absl::Seconds(60)))
      << metrics;

  const Exposition exposition(metrics);
  for (const auto& [name, expr] : used) {
    EXPECT_TRUE(exposition.Has(name))
        << name << " (in `" << expr << "`) is not on chstreamd's /metrics";
  }
  EXPECT_EQ(chstreamd.SignalAndWait(SIGTERM, absl::Seconds(10)), 0);
}

}  // namespace
}  // namespace chstream
