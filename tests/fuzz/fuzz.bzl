"""chstream_fuzz_test: a libFuzzer target, its seed corpus and its test.

For each `name` it declares
  - cc_binary `name`: LLVMFuzzerTestOneInput from `srcs`. Built with
    --config=fuzz (clang, tools/fuzz) libFuzzer provides main(); in every
    other build (gcc, --config=asan/tsan) replay_main.cc does, and the binary
    runs each input given on its command line once;
  - sh_test `name_test`: under --config=fuzz fuzzes for 30 s starting from
    corpus/<corpus>/; otherwise replays that corpus (a regression test of
    every seed, and of any crash input added to the corpus).
"""

load("//base:copts.bzl", "COPTS")

FUZZ_SECONDS_IN_SUITE = "30"

def chstream_fuzz_test(name, srcs, deps, corpus):
    native.cc_binary(
        name = name,
        testonly = True,
        srcs = srcs,
        copts = COPTS,
        linkopts = select({
            "//tests/fuzz:libfuzzer": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
        deps = deps + ["//tests/fuzz:fuzz_check"] + select({
            "//tests/fuzz:libfuzzer": [],
            "//conditions:default": ["//tests/fuzz:replay_main"],
        }),
    )
    native.sh_test(
        name = name + "_test",
        size = "small",
        # 30 s of fuzzing plus start-up on a loaded 2-core machine.
        timeout = "moderate",
        srcs = ["run_fuzz.sh"],
        args = [
            "$(rootpath :%s)" % name,
            "tests/fuzz/corpus/" + corpus,
        ] + select({
            "//tests/fuzz:libfuzzer": [FUZZ_SECONDS_IN_SUITE],
            "//conditions:default": ["0"],
        }),
        data = [":" + name] + native.glob(["corpus/%s/**" % corpus]),
    )
