// File: tests/testing/reflection_client.h
//
// Does in tests what grpcurl does against a server with no .proto files:
// lists services and fetches descriptors through server reflection
// (grpc.reflection.v1alpha), then calls unary methods with a JSON request
// and prints the response as JSON, using only what reflection returned.
//
//   ReflectionClient rc(channel);
//   rc.ListServices();                                  // grpcurl list
//   rc.Describe("chstream.v1.CompanyStream");           // grpcurl describe
//   rc.CallUnary("grpc.health.v1.Health/Check", "{}");  // grpcurl ... Check
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor_database.h>
#include <google/protobuf/dynamic_message.h>
#include <grpcpp/grpcpp.h>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"

namespace chstream::testing {

class ReflectionClient {
 public:
  explicit ReflectionClient(std::shared_ptr<grpc::Channel> channel);

  absl::StatusOr<std::vector<std::string>> ListServices();
  // The descriptor of a service, message or method, as protobuf text.
  absl::StatusOr<std::string> Describe(const std::string& symbol);
  // `method` is "package.Service/Method". Returns the response as JSON.
  absl::StatusOr<std::string> CallUnary(const std::string& method,
                                        const std::string& request_json);

 private:
  absl::Status LoadSymbol(const std::string& symbol);
  absl::Status LoadFile(const std::string& filename);
  absl::Status AddFiles(const std::vector<std::string>& serialized);

  std::shared_ptr<grpc::Channel> channel_;
  google::protobuf::SimpleDescriptorDatabase db_;
  google::protobuf::DescriptorPool pool_{&db_};
  google::protobuf::DynamicMessageFactory factory_{&pool_};
  absl::flat_hash_set<std::string> loaded_files_;
};

}  // namespace chstream::testing
