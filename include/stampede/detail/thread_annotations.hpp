// stampede/detail/thread_annotations.hpp: Clang thread-safety annotations and an annotated mutex.
//
// Under clang with -Wthread-safety, reading a STAMPEDE_GUARDED_BY(mu_) member without holding
// mu_ is a compile-time warning (the `clang-tsa` preset turns it into an error). Under GCC the
// macros expand to nothing.
//
//   detail::Mutex mu_;
//   int n_ STAMPEDE_GUARDED_BY(mu_) = 0;
//   void inc() { detail::MutexLock l(mu_); ++n_; }
#pragma once

#include <mutex>

#if defined(__clang__)
#define STAMPEDE_TSA(x) __attribute__((x))
#else
#define STAMPEDE_TSA(x)
#endif

#define STAMPEDE_CAPABILITY(x) STAMPEDE_TSA(capability(x))
#define STAMPEDE_SCOPED_CAPABILITY STAMPEDE_TSA(scoped_lockable)
#define STAMPEDE_GUARDED_BY(x) STAMPEDE_TSA(guarded_by(x))
#define STAMPEDE_PT_GUARDED_BY(x) STAMPEDE_TSA(pt_guarded_by(x))
#define STAMPEDE_REQUIRES(...) STAMPEDE_TSA(requires_capability(__VA_ARGS__))
#define STAMPEDE_ACQUIRE(...) STAMPEDE_TSA(acquire_capability(__VA_ARGS__))
#define STAMPEDE_RELEASE(...) STAMPEDE_TSA(release_capability(__VA_ARGS__))
#define STAMPEDE_EXCLUDES(...) STAMPEDE_TSA(locks_excluded(__VA_ARGS__))
#define STAMPEDE_NO_THREAD_SAFETY_ANALYSIS STAMPEDE_TSA(no_thread_safety_analysis)

namespace stampede::detail {

/// std::mutex with capability annotations. Usable with std::condition_variable_any.
class STAMPEDE_CAPABILITY("mutex") Mutex {
 public:
  void lock() STAMPEDE_ACQUIRE() { m_.lock(); }
  void unlock() STAMPEDE_RELEASE() { m_.unlock(); }
  bool try_lock() STAMPEDE_TSA(try_acquire_capability(true)) { return m_.try_lock(); }

 private:
  std::mutex m_;
};

/// Scoped lock of a Mutex; also BasicLockable, so std::condition_variable_any can wait on it.
class STAMPEDE_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) STAMPEDE_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() STAMPEDE_RELEASE() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;
  void lock() STAMPEDE_ACQUIRE() { mu_.lock(); }
  void unlock() STAMPEDE_RELEASE() { mu_.unlock(); }

 private:
  Mutex& mu_;
};

}  // namespace stampede::detail
