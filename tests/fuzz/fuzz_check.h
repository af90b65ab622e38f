// File: tests/fuzz/fuzz_check.h
//
// FUZZ_CHECK(cond) << "message": the fuzz targets' assertion. It aborts
// (which libFuzzer and the corpus replayer report as a crash, with the input
// saved) when a documented property of the code under test does not hold.
// Unlike assert() it is on in every compilation mode.
#pragma once

#include <cstdlib>
#include <iostream>
#include <sstream>

namespace chstream::fuzz {

// Collects the message, prints it with the failed condition and aborts when
// destroyed (at the end of the FUZZ_CHECK statement).
class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition) {
    stream_ << file << ":" << line << ": FUZZ_CHECK(" << condition
            << ") failed: ";
  }
  [[noreturn]] ~CheckFailure() {
    std::cerr << stream_.str() << std::endl;
    std::abort();
  }
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

}  // namespace chstream::fuzz

#define FUZZ_CHECK(condition) \
  if (condition) {            \
  } else                      \
    ::chstream::fuzz::CheckFailure(__FILE__, __LINE__, #condition).stream()
