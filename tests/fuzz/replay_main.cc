// File: tests/fuzz/replay_main.cc
//
// main() for fuzz targets built without libFuzzer (the normal gcc build, and
// --config=asan / --config=tsan): runs LLVMFuzzerTestOneInput once on every
// file named on the command line or found (recursively, in name order) in a
// directory named there. So `bazel test //...` replays every checked-in seed
// through each target, and a crashing input saved by a fuzzing run can be
// replayed in a debugger with the same binary:
//   bazel-bin/tests/fuzz/line_parser_fuzz crash-1234
// Under --config=fuzz libFuzzer provides main() instead (tests/fuzz/fuzz.bzl).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc,
                                                          char*** argv);

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);
  std::vector<std::filesystem::path> inputs;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path arg(argv[i]);
    if (std::filesystem::is_directory(arg)) {
      for (const auto& entry :
           std::filesystem::recursive_directory_iterator(arg)) {
        if (entry.is_regular_file()) inputs.push_back(entry.path());
      }
    } else {
      inputs.push_back(arg);
    }
  }
  std::sort(inputs.begin(), inputs.end());
  if (inputs.empty()) {
    std::cerr << "usage: " << argv[0] << " FILE_OR_DIR...: no input found\n";
    return 2;
  }
  for (const auto& path : inputs) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      std::cerr << "cannot read " << path << "\n";
      return 2;
    }
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
    std::cerr << "replaying " << path.string() << " (" << bytes.size()
              << " bytes)\n";
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()),
                           bytes.size());
  }
  std::cerr << "replayed " << inputs.size() << " inputs without a failure\n";
  return 0;
}
