// File: base/thread_name.h
//
// Names the calling thread (as `top -H`, `ps -L`, perf and gdb show it), so
// that an operator can see which part of chstreamd uses the CPU.
#pragma once

#include <pthread.h>

namespace chstream {

// `name`: at most 15 characters (the kernel's limit; longer is truncated
// by keeping the first 15).
inline void SetCurrentThreadName(const char* name) {
  char truncated[16];
  int i = 0;
  for (; i < 15 && name[i] != '\0'; ++i) truncated[i] = name[i];
  truncated[i] = '\0';
  pthread_setname_np(pthread_self(), truncated);
}

}  // namespace chstream
