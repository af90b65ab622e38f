#include "tests/testing/reflection_client.h"

#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/impl/codegen/client_unary_call.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/sync_stream.h>
#include <grpcpp/impl/codegen/proto_utils.h>

#include "absl/strings/str_cat.h"
#include "chstream/testing/reflection_client.pb.h"

namespace chstream::testing {
namespace {

namespace refl = ::chstream::testing::reflection;

absl::StatusOr<refl::ServerReflectionResponse> Ask(
    grpc::Channel* channel, const refl::ServerReflectionRequest& request) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::internal::RpcMethod method(
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
      grpc::internal::RpcMethod::BIDI_STREAMING);
  std::unique_ptr<grpc::ClientReaderWriter<refl::ServerReflectionRequest,
                                           refl::ServerReflectionResponse>>
      stream(grpc::internal::ClientReaderWriterFactory<
             refl::ServerReflectionRequest,
             refl::ServerReflectionResponse>::Create(channel, method, &ctx));
  refl::ServerReflectionResponse response;
  if (!stream->Write(request) || !stream->Read(&response)) {
    grpc::Status s = stream->Finish();
    return absl::UnavailableError(
        absl::StrCat("reflection call failed: ", s.error_message()));
  }
  stream->WritesDone();
  grpc::Status s = stream->Finish();
  if (!s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("reflection call failed: ", s.error_message()));
  }
  if (response.has_error_response()) {
    return absl::NotFoundError(response.error_response().error_message());
  }
  return response;
}

}  // namespace

ReflectionClient::ReflectionClient(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)) {}

absl::StatusOr<std::vector<std::string>> ReflectionClient::ListServices() {
  refl::ServerReflectionRequest req;
  req.set_list_services("");
  absl::StatusOr<refl::ServerReflectionResponse> resp = Ask(channel_.get(), req);
  if (!resp.ok()) return resp.status();
  std::vector<std::string> out;
  for (const auto& s : resp->list_services_response().service()) {
    out.push_back(s.name());
  }
  return out;
}

absl::Status ReflectionClient::AddFiles(
    const std::vector<std::string>& serialized) {
  std::vector<google::protobuf::FileDescriptorProto> files;
  for (const std::string& bytes : serialized) {
    google::protobuf::FileDescriptorProto fd;
    if (!fd.ParseFromString(bytes)) {
      return absl::DataLossError("bad FileDescriptorProto from reflection");
    }
    files.push_back(std::move(fd));
  }
  for (const auto& fd : files) {
    if (loaded_files_.insert(fd.name()).second) db_.Add(fd);
  }
  for (const auto& fd : files) {
    for (const std::string& dep : fd.dependency()) {
      if (!loaded_files_.contains(dep)) {
        if (absl::Status s = LoadFile(dep); !s.ok()) return s;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ReflectionClient::LoadFile(const std::string& filename) {
  refl::ServerReflectionRequest req;
  req.set_file_by_filename(filename);
  absl::StatusOr<refl::ServerReflectionResponse> resp = Ask(channel_.get(), req);
  if (!resp.ok()) return resp.status();
  const auto& protos = resp->file_descriptor_response().file_descriptor_proto();
  return AddFiles(std::vector<std::string>(protos.begin(), protos.end()));
}

absl::Status ReflectionClient::LoadSymbol(const std::string& symbol) {
  refl::ServerReflectionRequest req;
  req.set_file_containing_symbol(symbol);
  absl::StatusOr<refl::ServerReflectionResponse> resp = Ask(channel_.get(), req);
  if (!resp.ok()) return resp.status();
  const auto& protos = resp->file_descriptor_response().file_descriptor_proto();
  return AddFiles(std::vector<std::string>(protos.begin(), protos.end()));
}

absl::StatusOr<std::string> ReflectionClient::Describe(
    const std::string& symbol) {
  if (absl::Status s = LoadSymbol(symbol); !s.ok()) return s;
  if (const auto* sd = pool_.FindServiceByName(symbol)) return sd->DebugString();
  if (const auto* md = pool_.FindMessageTypeByName(symbol)) {
    return md->DebugString();
  }
  return absl::NotFoundError(absl::StrCat("symbol not found: ", symbol));
}

absl::StatusOr<std::string> ReflectionClient::CallUnary(
    const std::string& method, const std::string& request_json) {
  const size_t slash = method.find('/');
  if (slash == std::string::npos) {
    return absl::InvalidArgumentError("method must be Service/Method");
  }
  const std::string service = method.substr(0, slash);
  if (absl::Status s = LoadSymbol(service); !s.ok()) return s;
  const google::protobuf::ServiceDescriptor* sd =
      pool_.FindServiceByName(service);
  if (sd == nullptr) return absl::NotFoundError("service not in descriptors");
  const google::protobuf::MethodDescriptor* md =
      sd->FindMethodByName(method.substr(slash + 1));
  if (md == nullptr) return absl::NotFoundError("method not in descriptors");

  std::unique_ptr<google::protobuf::Message> request(
      factory_.GetPrototype(md->input_type())->New());
  auto parsed = google::protobuf::util::JsonStringToMessage(request_json,
                                                            request.get());
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(std::string(parsed.message()));
  }
  std::string bytes;
  request->SerializeToString(&bytes);
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::ByteBuffer response_buffer;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Status status = grpc::internal::BlockingUnaryCall(
      channel_.get(),
      grpc::internal::RpcMethod(absl::StrCat("/", method).c_str(),
                                grpc::internal::RpcMethod::NORMAL_RPC),
      &ctx, request_buffer, &response_buffer);
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        status.error_message());
  }
  std::vector<grpc::Slice> slices;
  (void)response_buffer.Dump(&slices);
  std::string response_bytes;
  for (const grpc::Slice& s : slices) {
    response_bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  std::unique_ptr<google::protobuf::Message> response(
      factory_.GetPrototype(md->output_type())->New());
  if (!response->ParseFromString(response_bytes)) {
    return absl::DataLossError("cannot parse the response");
  }
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  auto printed =
      google::protobuf::util::MessageToJsonString(*response, &json, options);
  if (!printed.ok()) return absl::InternalError(std::string(printed.message()));
  return json;
}

}  // namespace chstream::testing
