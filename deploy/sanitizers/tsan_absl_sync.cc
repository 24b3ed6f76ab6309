// ThreadSanitizer annotations for Debian's prebuilt Abseil synchronization library.
//
// Why: Debian's libabsl_synchronization.so is not built with -fsanitize=thread, so
// absl::Mutex locks and unlocks with plain atomics and futexes that TSan cannot see.
// Every access guarded by an absl::Mutex (all of nbrl's shared state, and gRPC's,
// whose gpr_mu and grpc_core::Mutex are absl::Mutex) would then be reported as a data
// race. Abseil built with TSan annotates itself with the __tsan_mutex_* interface;
// this file does the same from the outside.
//
// How: it is linked into every executable of a NBRL_SANITIZE=thread build
// (cmake/NbrlSanitize.cmake). It defines the public lock, unlock and wait functions
// of absl::Mutex, absl::CondVar, absl::Notification and absl::BlockingCounter, so
// that the executable's definitions interpose on the shared library's, for our code
// and for every library's calls through the PLT alike. Each one tells TSan what it
// is about to do, calls the real function (dlsym(RTLD_NEXT)) and tells TSan what it
// did, mirroring the ABSL_TSAN_MUTEX_* calls in Abseil's own mutex.cc. Between the
// pre and post calls TSan ignores this thread's accesses: conditions that Abseil
// evaluates inside a lock or unlock read guarded state as if they held the lock.
//
// Only for a TSan build: it does nothing useful anywhere else.

#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/base/options.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

// Exported by the TSan runtime, not declared in <sanitizer/tsan_interface.h>: this
// thread's memory accesses are not checked between the two calls.
extern "C" void __tsan_ignore_thread_begin();
extern "C" void __tsan_ignore_thread_end();

namespace {

#define NBRL_STR2(x) #x
#define NBRL_STR(x) NBRL_STR2(x)

// "_ZN4absl" + <length><inline namespace> + rest: the mangled name of a member of
// absl's inline namespace (debian3 on Debian 12).
std::string AbslSymbol(const char* rest) {
  const std::string ns = NBRL_STR(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  return "_ZN4absl" + std::to_string(ns.size()) + ns + rest;
}
std::string AbslConstSymbol(const char* rest) {
  const std::string ns = NBRL_STR(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  return "_ZNK4absl" + std::to_string(ns.size()) + ns + rest;
}

template <typename Fn>
Fn Real(const std::string& symbol) {
  void* fn = ::dlsym(RTLD_NEXT, symbol.c_str());
  if (fn == nullptr) {
    std::fprintf(stderr, "nbrl tsan_absl_sync: %s not found: %s\n", symbol.c_str(),
                 ::dlerror());
    std::abort();
  }
  return reinterpret_cast<Fn>(fn);
}

// One annotation per outermost call: absl's functions may call each other through
// the PLT (Notification::Notify locks its own mutex), and those inner calls are
// already covered by the outer one's ignore region and happens-before edge.
thread_local int depth = 0;
struct Scope {
  Scope() { ++depth; }
  ~Scope() { --depth; }
  bool outermost() const { return depth == 1; }
};

// absl::Mutex holds one word, mu_; kMuWriter (0x08) is set while held exclusively.
// Await and CondVar::Wait release and reacquire in the mode the caller held.
unsigned HeldMode(const absl::Mutex* mu) {
  static_assert(sizeof(absl::Mutex) == sizeof(intptr_t), "absl::Mutex layout changed");
  intptr_t v = reinterpret_cast<const std::atomic<intptr_t>*>(mu)->load(
      std::memory_order_relaxed);
  return (v & 0x08) != 0 ? 0u : unsigned{__tsan_mutex_read_lock};
}

using MuFn = void (*)(absl::Mutex*);
using MuTryFn = bool (*)(absl::Mutex*);
using MuCondFn = void (*)(absl::Mutex*, const absl::Condition&);
using MuCondDurFn = bool (*)(absl::Mutex*, const absl::Condition&, absl::Duration);
using MuCondTimeFn = bool (*)(absl::Mutex*, const absl::Condition&, absl::Time);

// LockWhen*: call() returns with mu held in the mode of flags.
template <typename Fn>
bool Locking(absl::Mutex* mu, unsigned flags, Fn call) {
  Scope scope;
  if (scope.outermost()) __tsan_mutex_pre_lock(mu, flags);
  bool result = call();
  if (scope.outermost()) __tsan_mutex_post_lock(mu, flags, 0);
  return result;
}

// Await*, CondVar::Wait*: call() unlocks mu, waits and locks it again in the mode
// the caller held.
template <typename Fn>
bool Waiting(absl::Mutex* mu, Fn call) {
  Scope scope;
  const unsigned flags = HeldMode(mu);
  if (scope.outermost()) __tsan_mutex_pre_unlock(mu, flags);
  bool result = call();
  if (scope.outermost()) __tsan_mutex_post_lock(mu, flags, 0);
  return result;
}

void AnnotatedLock(absl::Mutex* mu, unsigned flags, MuFn real) {
  Scope scope;
  if (scope.outermost()) __tsan_mutex_pre_lock(mu, flags);
  real(mu);
  if (scope.outermost()) __tsan_mutex_post_lock(mu, flags, 0);
}

bool AnnotatedTryLock(absl::Mutex* mu, unsigned flags, MuTryFn real) {
  Scope scope;
  flags |= __tsan_mutex_try_lock;
  if (scope.outermost()) __tsan_mutex_pre_lock(mu, flags);
  bool locked = real(mu);
  if (scope.outermost()) {
    __tsan_mutex_post_lock(mu, locked ? flags : flags | __tsan_mutex_try_lock_failed,
                           0);
  }
  return locked;
}

void AnnotatedUnlock(absl::Mutex* mu, unsigned flags, MuFn real) {
  Scope scope;
  if (scope.outermost()) __tsan_mutex_pre_unlock(mu, flags);
  real(mu);
  if (scope.outermost()) __tsan_mutex_post_unlock(mu, flags);
}

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

// TSan checks a destroy as a write to the mutex, against the last unlock. Whoever
// destroys a mutex of gRPC's learnt that it is free through gRPC's reference counts,
// which TSan cannot see, so the check is skipped; destroying a locked mutex is still
// reported, and the mutex's state is forgotten (its memory may hold another one).
Mutex::~Mutex() {
  static const auto real = Real<MuFn>(AbslSymbol("5MutexD2Ev"));
  __tsan_ignore_thread_begin();
  __tsan_mutex_destroy(this, 0);
  __tsan_ignore_thread_end();
  real(this);
}

void Mutex::Lock() {
  static const auto real = Real<MuFn>(AbslSymbol("5Mutex4LockEv"));
  AnnotatedLock(this, 0, real);
}

void Mutex::ReaderLock() {
  static const auto real = Real<MuFn>(AbslSymbol("5Mutex10ReaderLockEv"));
  AnnotatedLock(this, __tsan_mutex_read_lock, real);
}

bool Mutex::TryLock() {
  static const auto real = Real<MuTryFn>(AbslSymbol("5Mutex7TryLockEv"));
  return AnnotatedTryLock(this, 0, real);
}

bool Mutex::ReaderTryLock() {
  static const auto real = Real<MuTryFn>(AbslSymbol("5Mutex13ReaderTryLockEv"));
  return AnnotatedTryLock(this, __tsan_mutex_read_lock, real);
}

void Mutex::Unlock() {
  static const auto real = Real<MuFn>(AbslSymbol("5Mutex6UnlockEv"));
  AnnotatedUnlock(this, 0, real);
}

void Mutex::ReaderUnlock() {
  static const auto real = Real<MuFn>(AbslSymbol("5Mutex12ReaderUnlockEv"));
  AnnotatedUnlock(this, __tsan_mutex_read_lock, real);
}

void Mutex::LockWhen(const Condition& cond) {
  static const auto real =
      Real<MuCondFn>(AbslSymbol("5Mutex8LockWhenERKNS0_9ConditionE"));
  Locking(this, 0, [&] {
    real(this, cond);
    return true;
  });
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  static const auto real =
      Real<MuCondFn>(AbslSymbol("5Mutex14ReaderLockWhenERKNS0_9ConditionE"));
  Locking(this, __tsan_mutex_read_lock, [&] {
    real(this, cond);
    return true;
  });
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  static const auto real = Real<MuCondDurFn>(
      AbslSymbol("5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE"));
  return Locking(this, 0, [&] { return real(this, cond, timeout); });
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, Duration timeout) {
  static const auto real = Real<MuCondDurFn>(
      AbslSymbol("5Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE"));
  return Locking(this, __tsan_mutex_read_lock,
                 [&] { return real(this, cond, timeout); });
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  static const auto real = Real<MuCondTimeFn>(
      AbslSymbol("5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE"));
  return Locking(this, 0, [&] { return real(this, cond, deadline); });
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, Time deadline) {
  static const auto real = Real<MuCondTimeFn>(
      AbslSymbol("5Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE"));
  return Locking(this, __tsan_mutex_read_lock,
                 [&] { return real(this, cond, deadline); });
}

void Mutex::Await(const Condition& cond) {
  static const auto real = Real<MuCondFn>(AbslSymbol("5Mutex5AwaitERKNS0_9ConditionE"));
  Waiting(this, [&] {
    real(this, cond);
    return true;
  });
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  static const auto real = Real<MuCondDurFn>(
      AbslSymbol("5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE"));
  return Waiting(this, [&] { return real(this, cond, timeout); });
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  static const auto real = Real<MuCondTimeFn>(
      AbslSymbol("5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE"));
  return Waiting(this, [&] { return real(this, cond, deadline); });
}

void CondVar::Wait(Mutex* mu) {
  using Fn = void (*)(CondVar*, Mutex*);
  static const auto real = Real<Fn>(AbslSymbol("7CondVar4WaitEPNS0_5MutexE"));
  Waiting(mu, [&] {
    real(this, mu);
    return true;
  });
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  using Fn = bool (*)(CondVar*, Mutex*, Duration);
  static const auto real =
      Real<Fn>(AbslSymbol("7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE"));
  return Waiting(mu, [&] { return real(this, mu, timeout); });
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  using Fn = bool (*)(CondVar*, Mutex*, Time);
  static const auto real =
      Real<Fn>(AbslSymbol("7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE"));
  return Waiting(mu, [&] { return real(this, mu, deadline); });
}

// Notification: a waiter that finds it already notified takes no lock, so the
// happens-before edge is annotated on the object itself.
void Notification::Notify() {
  using Fn = void (*)(Notification*);
  static const auto real = Real<Fn>(AbslSymbol("12Notification6NotifyEv"));
  Scope scope;
  if (scope.outermost()) __tsan_release(this);
  real(this);
}

void Notification::WaitForNotification() const {
  using Fn = void (*)(const Notification*);
  static const auto real =
      Real<Fn>(AbslConstSymbol("12Notification19WaitForNotificationEv"));
  Scope scope;
  real(this);
  if (scope.outermost()) __tsan_acquire(const_cast<Notification*>(this));
}

bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  using Fn = bool (*)(const Notification*, Duration);
  static const auto real = Real<Fn>(
      AbslConstSymbol("12Notification30WaitForNotificationWithTimeoutENS0_8DurationE"));
  Scope scope;
  bool notified = real(this, timeout);
  if (notified && scope.outermost()) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  using Fn = bool (*)(const Notification*, Time);
  static const auto real = Real<Fn>(
      AbslConstSymbol("12Notification31WaitForNotificationWithDeadlineENS0_4TimeE"));
  Scope scope;
  bool notified = real(this, deadline);
  if (notified && scope.outermost()) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

bool BlockingCounter::DecrementCount() {
  using Fn = bool (*)(BlockingCounter*);
  static const auto real = Real<Fn>(AbslSymbol("15BlockingCounter14DecrementCountEv"));
  Scope scope;
  if (scope.outermost()) __tsan_release(this);
  return real(this);
}

void BlockingCounter::Wait() {
  using Fn = void (*)(BlockingCounter*);
  static const auto real = Real<Fn>(AbslSymbol("15BlockingCounter4WaitEv"));
  Scope scope;
  real(this);
  if (scope.outermost()) __tsan_acquire(this);
}

ABSL_NAMESPACE_END
}  // namespace absl
