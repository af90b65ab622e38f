// File: tests/cluster/cluster_test_util.h
//
// A fresh database with the cluster table on the test binary's shared
// PostgreSQL server (tests/testing/postgres_server.h).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "tests/testing/postgres_server.h"

namespace chstream::cluster::testing {

// The cluster table exactly as the PostgreSQL store's migrations create it.
inline constexpr char kClusterTableSql[] =
    "CREATE TABLE cluster (id int PRIMARY KEY CHECK (id = 1), "
    "store_id text NOT NULL, schema_version int NOT NULL, "
    "leader_epoch bigint NOT NULL DEFAULT 0, leader_id text, "
    "head bigint NOT NULL DEFAULT 0, heartbeat_at timestamptz); "
    "INSERT INTO cluster (id, store_id, schema_version) "
    "VALUES (1, 'test-store', 1)";

// Creates a database with the cluster table and its row; returns its URI.
inline absl::StatusOr<std::string> NewClusterDatabase(
    chstream::testing::PostgresServer* server) {
  absl::StatusOr<std::string> uri = server->CreateDatabase();
  if (!uri.ok()) return uri;
  absl::Status status = server->Execute(*uri, kClusterTableSql);
  if (!status.ok()) return status;
  return uri;
}

}  // namespace chstream::cluster::testing
