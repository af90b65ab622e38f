// The real chstreamd binary following its built-in simulator on all nine
// streams (`./tools/run --streams=all`), queried the way grpcurl does it
// (server reflection, proto3 JSON): an officer appointment fetched by its
// resource URI, and a company's current officers and PSCs listed.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "chstream/v1/chstream.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/child_process.h"
#include "tests/testing/reflection_client.h"

namespace chstream {
namespace {

using testing::ChildProcess;
using ::testing::HasSubstr;
using testing::ReflectionClient;
using testing::WaitUntil;

constexpr char kBinary[] = "server/chstreamd";

bool IsPsc(const std::string& kind) {
  return absl::StartsWith(kind, "company-psc-");
}

TEST(ChstreamdResourcesTest, OfficerByUriAndCompanyOfficersAndPscsOverJson) {
  const std::string dir =
      absl::StrCat(std::getenv("TEST_TMPDIR"), "/resources");
  std::filesystem::create_directories(dir);
  // No key: chstreamd follows its built-in simulator, as ./tools/run does.
  ChildProcess child(
      kBinary,
      {"--grpc_address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
       "--streams=all", "--simulator_rate=300", "--db_path=chstream.db"},
      {"PATH=/usr/bin:/bin", "TZ=UTC"}, dir, dir + "/out.log");
  ASSERT_TRUE(child.started());
  ASSERT_TRUE(WaitUntil(
      [&] { return absl::StrContains(child.Output(), "chstreamd serving"); },
      absl::Seconds(60)))
      << child.Output();
  auto channel =
      grpc::CreateChannel(testing::LoggedField(child.Output(), "grpc_address"),
                          grpc::InsecureChannelCredentials());
  auto stub = v1::CompanyStream::NewStub(channel);

  // Officers' and PSCs' events as they are stored, until one company has
  // both (read back through ReplayEvents).
  std::string officer_uri;
  std::string company;
  std::map<std::string, std::set<std::string>> kinds_by_company;
  uint64_t after = 0;
  ASSERT_TRUE(WaitUntil(
      [&] {
        grpc::ClientContext ctx;
        v1::ReplayEventsRequest req;
        req.mutable_start()->set_after_position(after);
        req.mutable_filter()->add_streams("officers");
        req.mutable_filter()->add_streams("persons-with-significant-control");
        req.mutable_filter()->add_types(v1::EVENT_TYPE_CHANGED);
        auto reader = stub->ReplayEvents(&ctx, req);
        v1::Event e;
        while (reader->Read(&e)) {
          after = e.position();
          if (e.resource_kind() == "company-officers" && officer_uri.empty()) {
            officer_uri = e.resource_uri();
          }
          kinds_by_company[e.company_number()].insert(
              e.resource_kind() == "company-officers" ? "officers"
              : IsPsc(e.resource_kind())              ? "psc"
                                                      : "other");
        }
        reader->Finish().IgnoreError();
        for (const auto& [number, kinds] : kinds_by_company) {
          if (kinds.count("officers") != 0 && kinds.count("psc") != 0) {
            company = number;
          }
        }
        return !officer_uri.empty() && !company.empty();
      },
      absl::Seconds(120)))
      << "no company with both officers and PSCs yet";

  // What `./resource.sh URI` sends and grpcurl prints.
  ReflectionClient rc(channel);
  absl::StatusOr<std::string> json =
      rc.CallUnary("chstream.v1.CompanyStream/GetResource",
                   absl::StrCat(R"({"resourceUri":")", officer_uri, R"("})"));
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_THAT(*json, HasSubstr(R"("resourceKind":"company-officers")"));
  EXPECT_THAT(*json, HasSubstr(absl::StrCat(R"("resourceUri":")", officer_uri,
                                            R"(")")));
  EXPECT_THAT(*json, HasSubstr(R"("officer_role":)"));  // the data
  EXPECT_THAT(officer_uri, HasSubstr("/appointments/"));

  // What `./company_resources.sh N company-officers company-psc-...` sends.
  json = rc.CallUnary(
      "chstream.v1.CompanyStream/ListCompanyResources",
      absl::StrCat(R"({"companyNumber":")", company,
                   R"(","resourceKinds":["company-officers",)",
                   R"("company-psc-individual","company-psc-corporate",)",
                   R"("company-psc-legal","company-psc-supersecure"],)",
                   R"("pageSize":1000,"includeDeleted":true})"));
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_THAT(*json, HasSubstr(R"("resourceKind":"company-officers")"));
  EXPECT_THAT(*json, HasSubstr(R"("resourceKind":"company-psc-)"));
  EXPECT_THAT(*json, HasSubstr(absl::StrCat("/company/", company,
                                            "/persons-with-significant-"
                                            "control/")));
  EXPECT_EQ(child.SignalAndWait(SIGTERM, absl::Seconds(10)), 0);
}

}  // namespace
}  // namespace chstream
