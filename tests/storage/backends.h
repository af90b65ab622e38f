// File: tests/storage/backends.h
//
// The two EventStore backends for parameterised storage tests: SQLite in
// ${TEST_TMPDIR} and PostgreSQL on the test binary's throwaway server
// (tests/testing/postgres_server.h, a fresh database per location), each
// with raw SQL access to its data outside the store.
//
// Thread-safety: one test thread per Backend.
//
//   class MyTest : public ::testing::TestWithParam<BackendKind> {...};
//   INSTANTIATE_TEST_SUITE_P(Backends, MyTest, AllBackends(), BackendName);
//   std::unique_ptr<Backend> b = MakeBackend(GetParam());
//   ASSERT_OK(b->NewLocation());
//   ASSERT_OK_AND_ASSIGN(std::unique_ptr<EventStore> store, b->Open());
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "storage/store.h"

namespace chstream::storage::testing {

class Backend {
 public:
  virtual ~Backend() = default;
  // Points at a new, empty location (file or database).
  virtual absl::Status NewLocation() = 0;
  virtual absl::StatusOr<std::unique_ptr<EventStore>> Open() = 0;
  virtual absl::Status ExecRaw(const std::string& sql) = 0;
  // The first column of the first row of `sql`, as text.
  virtual absl::StatusOr<std::string> QueryValue(const std::string& sql) = 0;
  // The statement that stamps the schema version `v` on the database.
  virtual std::string SetSchemaVersionSql(int v) const = 0;
};

class SqliteBackend : public Backend {
 public:
  absl::Status NewLocation() override;
  absl::StatusOr<std::unique_ptr<EventStore>> Open() override;
  absl::Status ExecRaw(const std::string& sql) override;
  absl::StatusOr<std::string> QueryValue(const std::string& sql) override;
  std::string SetSchemaVersionSql(int v) const override;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class PostgresBackend : public Backend {
 public:
  absl::Status NewLocation() override;
  absl::StatusOr<std::unique_ptr<EventStore>> Open() override;
  absl::Status ExecRaw(const std::string& sql) override;
  absl::StatusOr<std::string> QueryValue(const std::string& sql) override;
  std::string SetSchemaVersionSql(int v) const override;
  const std::string& uri() const { return uri_; }

 private:
  std::string uri_;
};

enum class BackendKind { kSqlite, kPostgres };

std::unique_ptr<Backend> MakeBackend(BackendKind kind);

// For INSTANTIATE_TEST_SUITE_P: both kinds, named "Sqlite" and "Postgres".
inline auto AllBackends() {
  return ::testing::Values(BackendKind::kSqlite, BackendKind::kPostgres);
}
std::string BackendName(const ::testing::TestParamInfo<BackendKind>& info);

}  // namespace chstream::storage::testing
