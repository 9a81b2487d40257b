// Makes absl::Mutex and absl::Notification visible to ThreadSanitizer.
//
// Debian's Abseil is not built with -fsanitize=thread, so the ordering its
// locks provide is invisible to TSan and every access guarded by an
// absl::Mutex is reported as a race. scripts/test-sanitizers.sh therefore
// runs the TSan tests with this library in LD_PRELOAD: its definitions of the
// Mutex and Notification member functions interpose on the ones in
// libabsl_synchronization.so (for our code and for every library that calls
// them through the PLT). Each one calls the real function (found with
// dlsym(RTLD_NEXT)) and tells TSan about the happens-before edge:
//   * Lock/ReaderLock/TryLock (when it succeeds): acquire after locking;
//   * Unlock/ReaderUnlock: release before unlocking;
//   * Notify: release; WaitForNotification*: acquire once notified.
// The condition waits (Await*, LockWhen*) are re-implemented on top of those:
// evaluate the condition with the lock held, otherwise unlock, sleep briefly
// and lock again. That keeps Abseil's contract (the condition holds and the
// lock is held on return) while every lock hand-off goes through the
// annotated calls; it polls, which is fine for tests.
//
// Built only for -DOPENELM_SANITIZE=thread; not linked into anything. The
// __tsan_* functions come from the TSan runtime of the executable (weak, so
// an uninstrumented process that inherits LD_PRELOAD, such as ctest, loads it
// without them and never calls these functions anyway).
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

extern "C" {
void __tsan_acquire(void* addr) __attribute__((weak));
void __tsan_release(void* addr) __attribute__((weak));
}

namespace {

void Acquire(const void* addr) {
  if (__tsan_acquire != nullptr) __tsan_acquire(const_cast<void*>(addr));
}
void Release(const void* addr) {
  if (__tsan_release != nullptr) __tsan_release(const_cast<void*>(addr));
}

// The real member function `symbol` (Itanium mangling of Debian's
// absl::debian3 inline namespace), called with `this` as first argument.
template <typename Fn>
Fn Real(const char* symbol) {
  void* f = dlsym(RTLD_NEXT, symbol);
  if (f == nullptr) {
    std::fprintf(stderr, "tsan_absl_shim: %s not found: %s\n", symbol, dlerror());
    std::abort();
  }
  return reinterpret_cast<Fn>(f);
}

using VoidFn = void (*)(absl::Mutex*);
using BoolFn = bool (*)(absl::Mutex*);

constexpr absl::Duration kPoll = absl::Microseconds(100);

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  static const VoidFn real = Real<VoidFn>("_ZN4absl7debian35Mutex4LockEv");
  real(this);
  Acquire(this);
}

void Mutex::Unlock() {
  static const VoidFn real = Real<VoidFn>("_ZN4absl7debian35Mutex6UnlockEv");
  Release(this);
  real(this);
}

bool Mutex::TryLock() {
  static const BoolFn real = Real<BoolFn>("_ZN4absl7debian35Mutex7TryLockEv");
  const bool locked = real(this);
  if (locked) Acquire(this);
  return locked;
}

void Mutex::ReaderLock() {
  static const VoidFn real = Real<VoidFn>("_ZN4absl7debian35Mutex10ReaderLockEv");
  real(this);
  Acquire(this);
}

void Mutex::ReaderUnlock() {
  static const VoidFn real = Real<VoidFn>("_ZN4absl7debian35Mutex12ReaderUnlockEv");
  Release(this);
  real(this);
}

bool Mutex::ReaderTryLock() {
  static const BoolFn real = Real<BoolFn>("_ZN4absl7debian35Mutex13ReaderTryLockEv");
  const bool locked = real(this);
  if (locked) Acquire(this);
  return locked;
}

// Condition waits: the caller holds the lock exclusively (Abseil's Await
// contract); the ReaderLockWhen variants poll under a reader lock.
bool Mutex::AwaitWithDeadline(const Condition& cond, absl::Time deadline) {
  while (!cond.Eval()) {
    if (absl::Now() >= deadline) return false;
    Unlock();
    absl::SleepFor(kPoll);
    Lock();
  }
  return true;
}

void Mutex::Await(const Condition& cond) {
  AwaitWithDeadline(cond, absl::InfiniteFuture());
}

bool Mutex::AwaitWithTimeout(const Condition& cond, absl::Duration timeout) {
  return AwaitWithDeadline(cond, absl::Now() + timeout);
}

void Mutex::LockWhen(const Condition& cond) {
  Lock();
  Await(cond);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  Lock();
  return AwaitWithTimeout(cond, timeout);
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  Lock();
  return AwaitWithDeadline(cond, deadline);
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  ReaderLock();
  while (!cond.Eval()) {
    if (absl::Now() >= deadline) return false;
    ReaderUnlock();
    absl::SleepFor(kPoll);
    ReaderLock();
  }
  return true;
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  ReaderLockWhenWithDeadline(cond, absl::InfiniteFuture());
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  return ReaderLockWhenWithDeadline(cond, absl::Now() + timeout);
}

void Notification::Notify() {
  using NotifyFn = void (*)(Notification*);
  static const NotifyFn real = Real<NotifyFn>("_ZN4absl7debian312Notification6NotifyEv");
  Release(this);
  real(this);
}

bool Notification::WaitForNotificationWithDeadline(absl::Time deadline) const {
  while (!HasBeenNotified()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(kPoll);
  }
  Acquire(this);
  return true;
}

void Notification::WaitForNotification() const {
  WaitForNotificationWithDeadline(absl::InfiniteFuture());
}

bool Notification::WaitForNotificationWithTimeout(absl::Duration timeout) const {
  return WaitForNotificationWithDeadline(absl::Now() + timeout);
}

ABSL_NAMESPACE_END
}  // namespace absl
