"""C++ code generation for .proto files with Debian's protoc and grpc_cpp_plugin.

`cc_grpc_genrule_library` runs /usr/bin/protoc (with the system gRPC plugin)
in a genrule and wraps the outputs in a cc_library. Import paths are relative
to the package directory (`-I<package>`), so `proto/chstream/v1/x.proto` is
known to protoc, to reflection and to clients as `chstream/v1/x.proto`, and
its header is included as "chstream/v1/x.pb.h".
"""

PROTOC = "/usr/bin/protoc"
GRPC_CPP_PLUGIN = "/usr/bin/grpc_cpp_plugin"

def cc_grpc_genrule_library(name, srcs, deps = [], proto_deps = [], grpc = True, visibility = None, testonly = False):
    """cc_library `name` with the protoc (and gRPC) output for `srcs`.

    Args:
      name: the cc_library.
      srcs: .proto files below this package.
      deps: cc_library targets holding the generated code of imported protos.
      proto_deps: the imported .proto files (labels), made visible to protoc.
      grpc: also run grpc_cpp_plugin (services).
      visibility: of the cc_library.
      testonly: passed through.
    """
    hdrs, ccs = [], []
    for src in srcs:
        stem = src[:-len(".proto")]
        hdrs.append(stem + ".pb.h")
        ccs.append(stem + ".pb.cc")
        if grpc:
            hdrs.append(stem + ".grpc.pb.h")
            ccs.append(stem + ".grpc.pb.cc")
    pkg = native.package_name()
    out_dir = "$(GENDIR)/" + pkg
    grpc_flags = ""
    if grpc:
        grpc_flags = "--plugin=protoc-gen-grpc=%s --grpc_out=%s " % (GRPC_CPP_PLUGIN, out_dir)
    native.genrule(
        name = name + "_codegen",
        srcs = srcs + proto_deps,
        outs = hdrs + ccs,
        cmd = "%s -I%s --cpp_out=%s %s%s" % (
            PROTOC,
            pkg,
            out_dir,
            grpc_flags,
            " ".join(["%s/%s" % (pkg, s) for s in srcs]),
        ),
        testonly = testonly,
        visibility = ["//visibility:private"],
    )
    native.cc_library(
        name = name,
        srcs = ccs,
        hdrs = hdrs,
        # Generated code is exempt from the project's warning flags.
        copts = ["-w"],
        includes = ["."],
        deps = deps + ["//third_party:grpc" if grpc else "//third_party:protobuf"],
        testonly = testonly,
        visibility = visibility,
    )
