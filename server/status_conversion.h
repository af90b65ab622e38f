// File: server/status_conversion.h
//
// The one place where absl::Status becomes grpc::Status. Codes map one to
// one (both follow google.rpc.Code); the message is redacted of secrets.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "base/log.h"

namespace chstream::server {

inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      log::Redact(std::string(status.message())));
}

}  // namespace chstream::server
