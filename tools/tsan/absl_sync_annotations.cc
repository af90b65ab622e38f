// File: tools/tsan/absl_sync_annotations.cc
//
// Makes Debian's absl::Mutex, absl::CondVar and absl::Notification visible to
// ThreadSanitizer. Debian's libabsl_synchronization.so is not built with
// -fsanitize=thread, so its lock and unlock (atomics and futexes inside the
// library) create no happens-before edge that tsan can see: every field
// guarded by an absl::Mutex in chstream (and in gRPC, whose grpc_core::Mutex
// is an absl::Mutex) was reported as a data race between two threads that
// both held the lock. Suppressing those reports would hide every real race
// too, so instead this library is preloaded (LD_PRELOAD, set by
// tools/tsan/run_under.sh) into tests run with --config=tsan: it defines the
// out-of-line absl entry points, tells tsan what they do with the same
// __tsan_mutex_* annotations absl itself uses when it is built with tsan, and
// calls the real function (dlsym(RTLD_NEXT)).
//
// It is built without instrumentation and refers to the tsan interface only
// through weak symbols, so in a process without tsan (a shell a test starts)
// it loads and only forwards.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "absl/base/options.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

#define CHS_STR2(x) #x
#define CHS_STR(x) CHS_STR2(x)
// The mangled names below are Debian 12's (inline namespace absl::debian3).
static_assert(std::string_view(CHS_STR(ABSL_OPTION_INLINE_NAMESPACE_NAME)) ==
                  "debian3",
              "update the mangled names for this abseil build");
#define NS "_ZN4absl7debian3"
#define NSK "_ZNK4absl7debian3"  // const member functions

extern "C" {
// The tsan interface (<sanitizer/tsan_interface.h>), weak: null without tsan.
__attribute__((weak)) void __tsan_acquire(void* addr);
__attribute__((weak)) void __tsan_release(void* addr);
__attribute__((weak)) void __tsan_mutex_destroy(void* addr, unsigned flags);
__attribute__((weak)) void __tsan_mutex_pre_lock(void* addr, unsigned flags);
__attribute__((weak)) void __tsan_mutex_post_lock(void* addr, unsigned flags,
                                                  int recursion);
__attribute__((weak)) int __tsan_mutex_pre_unlock(void* addr, unsigned flags);
__attribute__((weak)) void __tsan_mutex_post_unlock(void* addr, unsigned flags);
__attribute__((weak)) void __tsan_func_entry(void* call_pc);
__attribute__((weak)) void __tsan_func_exit();
}

namespace {

// Flag values from <sanitizer/tsan_interface.h>.
constexpr unsigned kReadLock = 1 << 3;
constexpr unsigned kTryLock = 1 << 4;
constexpr unsigned kTryLockFailed = 1 << 5;

// Some of these functions call others of them through the PLT (e.g.
// CondVar::WaitWithTimeout calls WaitWithDeadline), which lands here again:
// only the outermost call on a thread is annotated.
thread_local int depth = 0;

//
// The outermost call also enters a tsan function frame for its caller: this
// library is not instrumented, so without it a report's stack ends in the
// annotation with no trace of who locked (the line in chstream, or the
// system library, that called Lock).
class Nested {
 public:
  explicit Nested(void* caller) : outermost_(++depth == 1) {
    if (outermost_ && __tsan_func_entry != nullptr) __tsan_func_entry(caller);
  }
  ~Nested() {
    if (outermost_ && __tsan_func_exit != nullptr) __tsan_func_exit();
    --depth;
  }
  Nested(const Nested&) = delete;
  Nested& operator=(const Nested&) = delete;

 private:
  const bool outermost_;
};

bool Tsan() { return __tsan_mutex_pre_lock != nullptr && depth == 1; }

// True if `pc` is in a Debian system library (/lib, /usr/lib): code built
// without -fsanitize=thread. chstream's own code (instrumented) lives in
// Bazel's output tree.
bool InSystemLibrary(void* pc) {
  Dl_info info;
  if (dladdr(pc, &info) == 0 || info.dli_fname == nullptr) return false;
  const std::string_view path(info.dli_fname);
  return path.substr(0, 5) == "/lib/" || path.substr(0, 9) == "/usr/lib/";
}

// What the outermost call on this thread is doing to which mutex, as tsan
// sees it while the real function runs. absl evaluates a Condition inside
// its lock and unlock (the waiter's own in LockWhen and Await, other
// waiters' in Unlock and in CondVar::Wait's release), where tsan considers
// the mutex not held; Condition::Eval below uses this to show the predicate
// as running under the lock, as absl's own EvalConditionAnnotated does when
// abseil is built with tsan.
enum class State { kNone, kLocking, kUnlocking, kUnlocked };
struct Op {
  void* mu = nullptr;
  unsigned flags = 0;
  State state = State::kNone;
};
thread_local Op op;

// Records `state` for the duration of the real call (outermost calls only).
class During {
 public:
  During(void* mu, unsigned flags, State state) : active_(Tsan()) {
    if (active_) op = Op{mu, flags & kReadLock, state};
  }
  ~During() {
    if (active_) op = Op{};
  }
  During(const During&) = delete;
  During& operator=(const During&) = delete;

 private:
  const bool active_;
};

void PreLock(void* mu, unsigned flags) {
  if (Tsan()) __tsan_mutex_pre_lock(mu, flags);
}
void PostLock(void* mu, unsigned flags) {
  if (Tsan()) __tsan_mutex_post_lock(mu, flags, 0);
}
// An unlock as one step (before the real unlock, as absl does).
void Unlocked(void* mu, unsigned flags) {
  if (!Tsan()) return;
  __tsan_mutex_pre_unlock(mu, flags);
  __tsan_mutex_post_unlock(mu, flags);
}

// A waiter's Condition (on its stack) is read by whichever thread evaluates
// it, often the one that unlocks (see Condition::Eval): the waiter hands it
// over through the mutex's internal wait list, whose atomics tsan cannot see.
void Publish(const absl::Condition& cond) {
  if (Tsan()) __tsan_release(const_cast<absl::Condition*>(&cond));
}

template <typename Fn>
Fn Real(const char* name) {
  void* fn = dlsym(RTLD_NEXT, name);
  if (fn == nullptr) {
    // Not in the global scope: a process that loaded abseil with
    // RTLD_LOCAL (Python's grpcio extension under a tsan test) still calls
    // these definitions, which come first; ask the library itself.
    void* lib =
        dlopen("libabsl_synchronization.so." CHS_STR(ABSL_LTS_RELEASE_VERSION),
               RTLD_LAZY | RTLD_NOLOAD);
    if (lib != nullptr) fn = dlsym(lib, name);
  }
  if (fn == nullptr) {
    std::fprintf(stderr, "absl_sync_annotations: %s not found\n", name);
    std::abort();
  }
  return reinterpret_cast<Fn>(fn);
}

// Declares `real`, the library's function with mangled name `name`.
// Also marks the call as nested for the functions it calls, and puts the
// caller on tsan's stack (see Nested).
#define REAL(type, name)                     \
  static const auto real = Real<type>(name); \
  const Nested nested(__builtin_return_address(0))

using absl::Condition;
using absl::CondVar;
using absl::Duration;
using absl::Mutex;
using absl::Notification;
using absl::Time;

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

// A mutex that a system library destroys (gRPC's, inside its reference-
// counted call, channel and endpoint objects) is not annotated: the library
// orders its last unlock before the destruction with its own atomic
// reference counts, which tsan cannot see, so the destroy's imitated write
// was reported against the last Lock on another thread (grpc_security_test,
// resume_loop_test, daemon_postgres_test). tsan drops the mutex's state when
// the memory is freed. A mutex destroyed by chstream code is annotated.
Mutex::~Mutex() {
  REAL(void (*)(Mutex*), NS "5MutexD2Ev");
  if (Tsan() && !InSystemLibrary(__builtin_return_address(0))) {
    __tsan_mutex_destroy(this, 0);
  }
  real(this);
}

void Mutex::Lock() {
  REAL(void (*)(Mutex*), NS "5Mutex4LockEv");
  PreLock(this, 0);
  const During during(this, 0, State::kLocking);
  real(this);
  PostLock(this, 0);
}

void Mutex::ReaderLock() {
  REAL(void (*)(Mutex*), NS "5Mutex10ReaderLockEv");
  PreLock(this, kReadLock);
  const During during(this, kReadLock, State::kLocking);
  real(this);
  PostLock(this, kReadLock);
}

void Mutex::Unlock() {
  REAL(void (*)(Mutex*), NS "5Mutex6UnlockEv");
  if (Tsan()) __tsan_mutex_pre_unlock(this, 0);
  const During during(this, 0, State::kUnlocking);
  real(this);
  if (Tsan()) __tsan_mutex_post_unlock(this, 0);
}

void Mutex::ReaderUnlock() {
  REAL(void (*)(Mutex*), NS "5Mutex12ReaderUnlockEv");
  if (Tsan()) __tsan_mutex_pre_unlock(this, kReadLock);
  const During during(this, kReadLock, State::kUnlocking);
  real(this);
  if (Tsan()) __tsan_mutex_post_unlock(this, kReadLock);
}

bool Mutex::TryLock() {
  REAL(bool (*)(Mutex*), NS "5Mutex7TryLockEv");
  PreLock(this, kTryLock);
  const bool locked = real(this);
  PostLock(this, locked ? kTryLock : kTryLock | kTryLockFailed);
  return locked;
}

bool Mutex::ReaderTryLock() {
  REAL(bool (*)(Mutex*), NS "5Mutex13ReaderTryLockEv");
  PreLock(this, kReadLock | kTryLock);
  const bool locked = real(this);
  PostLock(this, locked ? kReadLock | kTryLock
                        : kReadLock | kTryLock | kTryLockFailed);
  return locked;
}

// Await releases the mutex while the condition is false and takes it again:
// an unlock and a lock for tsan (whether or not it had to wait).
void Mutex::Await(const Condition& cond) {
  REAL(void (*)(Mutex*, const Condition&), NS "5Mutex5AwaitERKNS0_9ConditionE");
  Publish(cond);  // before PreLock: tsan ignores sync inside a lock
  Unlocked(this, 0);
  PreLock(this, 0);
  const During during(this, 0, State::kLocking);
  real(this, cond);
  PostLock(this, 0);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  REAL(bool (*)(Mutex*, const Condition&, Duration),
       NS "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  Publish(cond);  // before PreLock: tsan ignores sync inside a lock
  Unlocked(this, 0);
  PreLock(this, 0);
  const During during(this, 0, State::kLocking);
  const bool met = real(this, cond, timeout);
  PostLock(this, 0);
  return met;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  REAL(bool (*)(Mutex*, const Condition&, Time),
       NS "5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  Publish(cond);  // before PreLock: tsan ignores sync inside a lock
  Unlocked(this, 0);
  PreLock(this, 0);
  const During during(this, 0, State::kLocking);
  const bool met = real(this, cond, deadline);
  PostLock(this, 0);
  return met;
}

void Mutex::LockWhen(const Condition& cond) {
  REAL(void (*)(Mutex*, const Condition&),
       NS "5Mutex8LockWhenERKNS0_9ConditionE");
  Publish(cond);  // before PreLock: tsan ignores sync inside a lock
  PreLock(this, 0);
  const During during(this, 0, State::kLocking);
  real(this, cond);
  PostLock(this, 0);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  REAL(bool (*)(Mutex*, const Condition&, Duration),
       NS "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  Publish(cond);  // before PreLock: tsan ignores sync inside a lock
  PreLock(this, 0);
  const During during(this, 0, State::kLocking);
  const bool met = real(this, cond, timeout);
  PostLock(this, 0);
  return met;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  REAL(bool (*)(Mutex*, const Condition&, Time),
       NS "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  Publish(cond);  // before PreLock: tsan ignores sync inside a lock
  PreLock(this, 0);
  const During during(this, 0, State::kLocking);
  const bool met = real(this, cond, deadline);
  PostLock(this, 0);
  return met;
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  REAL(void (*)(Mutex*, const Condition&),
       NS "5Mutex14ReaderLockWhenERKNS0_9ConditionE");
  Publish(cond);  // before PreLock: tsan ignores sync inside a lock
  PreLock(this, kReadLock);
  const During during(this, kReadLock, State::kLocking);
  real(this, cond);
  PostLock(this, kReadLock);
}

// CondVar waits release `mu` and take it again before returning.
void CondVar::Wait(Mutex* mu) {
  REAL(void (*)(CondVar*, Mutex*), NS "7CondVar4WaitEPNS0_5MutexE");
  Unlocked(mu, 0);
  const During during(mu, 0, State::kUnlocked);
  real(this, mu);
  PreLock(mu, 0);
  PostLock(mu, 0);
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  REAL(bool (*)(CondVar*, Mutex*, Duration),
       NS "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  Unlocked(mu, 0);
  const During during(mu, 0, State::kUnlocked);
  const bool timed_out = real(this, mu, timeout);
  PreLock(mu, 0);
  PostLock(mu, 0);
  return timed_out;
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  REAL(bool (*)(CondVar*, Mutex*, Time),
       NS "7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  Unlocked(mu, 0);
  const During during(mu, 0, State::kUnlocked);
  const bool timed_out = real(this, mu, deadline);
  PreLock(mu, 0);
  PostLock(mu, 0);
  return timed_out;
}

// The other half of Publish. Called where tsan no longer ignores
// synchronization: inside a mutex operation (between pre_ and post_) it does.
void Received(const Condition* cond) {
  __tsan_acquire(const_cast<Condition*>(cond));
}

// See Op. Evaluated by the library, possibly on another thread than the
// waiter's (the one that unlocks), with the real mutex held.
bool Condition::Eval() const {
  static const auto real =
      Real<bool (*)(const Condition*)>(NSK "9Condition4EvalEv");
  const Op now = op;
  if (now.state == State::kNone || __tsan_mutex_pre_lock == nullptr) {
    return real(this);
  }
  void* const mu = now.mu;
  const unsigned f = now.flags;
  bool result = false;
  switch (now.state) {
    case State::kLocking:  // between pre_lock and post_lock
      __tsan_mutex_post_lock(mu, f, 0);
      Received(this);
      result = real(this);
      __tsan_mutex_pre_unlock(mu, f);
      __tsan_mutex_post_unlock(mu, f);
      __tsan_mutex_pre_lock(mu, f);
      break;
    case State::kUnlocking:  // between pre_unlock and post_unlock
      __tsan_mutex_post_unlock(mu, f);
      __tsan_mutex_pre_lock(mu, f);
      __tsan_mutex_post_lock(mu, f, 0);
      Received(this);
      result = real(this);
      __tsan_mutex_pre_unlock(mu, f);
      break;
    case State::kUnlocked:  // released for a CondVar wait
      __tsan_mutex_pre_lock(mu, f);
      __tsan_mutex_post_lock(mu, f, 0);
      Received(this);
      result = real(this);
      __tsan_mutex_pre_unlock(mu, f);
      __tsan_mutex_post_unlock(mu, f);
      break;
    case State::kNone:
      break;
  }
  return result;
}

// Notify happens before every wait that returns notified. (The inline
// HasBeenNotified() reads an atomic the library wrote; tsan cannot see that
// edge.)
void Notification::Notify() {
  REAL(void (*)(Notification*), NS "12Notification6NotifyEv");
  if (Tsan()) __tsan_release(this);
  real(this);
}

void Notification::WaitForNotification() const {
  REAL(void (*)(const Notification*),
       NSK "12Notification19WaitForNotificationEv");
  real(this);
  if (Tsan()) __tsan_acquire(const_cast<Notification*>(this));
}

bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  REAL(bool (*)(const Notification*, Duration),
       NSK "12Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
  const bool notified = real(this, timeout);
  if (notified && Tsan()) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  REAL(bool (*)(const Notification*, Time),
       NSK "12Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
  const bool notified = real(this, deadline);
  if (notified && Tsan()) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl
