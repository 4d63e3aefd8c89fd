// stampede/refresher.hpp: a bounded background executor that runs at most one task per key.
//
// SWR and early refresh hand it one task per key to refresh. A key already queued or running is
// not queued again; when the queue is full the task is dropped (and the caller counts it).
//
//   stampede::Refresher r({.threads = 2, .queue = 1024});
//   r.submit("item:1", [] { refresh_item_1(); });   // Submit::queued
//   r.submit("item:1", [] { refresh_item_1(); });   // Submit::duplicate while the first is pending
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include "stampede/detail/thread_annotations.hpp"

#include <condition_variable>

namespace stampede {

/// Thread-safe. Threads start on the first submit (a Cache that never refreshes starts none).
///
/// Lifetime: stop() (and the destructor) discards queued tasks that have not started, waits for
/// running tasks to finish, and joins the threads; after it, submit() returns Submit::stopped.
/// A task must therefore not wait for a thing that only the Refresher's owner's destruction
/// would provide. Tasks must not throw; an exception escaping a task is swallowed.
class Refresher {
 public:
  struct Options {
    std::size_t threads = 1;  ///< worker threads; >= 1
    std::size_t queue = 1024; ///< tasks waiting for a thread; >= 1
  };
  enum class Submit { queued, duplicate, dropped, stopped };

  /// @throws std::invalid_argument if threads or queue is 0.
  explicit Refresher(Options options);
  ~Refresher();
  Refresher(const Refresher&) = delete;
  Refresher& operator=(const Refresher&) = delete;

  /// Queues `task` for `key` unless the key is already queued or running.
  Submit submit(std::string_view key, std::function<void()> task);
  /// Lock-free hint for hot paths: true means `key` is very likely queued or running (a 64-bit hash
  /// matched), so a caller can skip building a task. false means "maybe not": call submit().
  [[nodiscard]] bool probably_pending(std::string_view key) const noexcept {
    const std::uint64_t h = hash(key);
    return hints_[h % kHints].load(std::memory_order_relaxed) == h;
  }
  /// Discards queued tasks, waits for running ones, joins the threads. Idempotent.
  void stop() noexcept;
  /// Blocks until nothing is queued or running (tests and orderly shutdown).
  void wait_idle();

 private:
  struct Task {
    std::string key;
    std::function<void()> fn;
  };
  void run() noexcept;
  void clear_hint(std::string_view key) noexcept;
  static std::uint64_t hash(std::string_view key) noexcept {
    return std::hash<std::string_view>{}(key) | 1;  // never 0, the empty slot
  }

  static constexpr std::size_t kHints = 256;
  // One slot per hash bucket holding the hash of a pending key. Readers only load (no shared writes
  // on the stale-hit path); submit/run write it under mu_.
  std::array<std::atomic<std::uint64_t>, kHints> hints_{};

  Options options_;
  detail::Mutex mu_;
  std::condition_variable_any work_cv_;
  std::condition_variable_any idle_cv_;
  std::deque<Task> queue_ STAMPEDE_GUARDED_BY(mu_);
  std::unordered_set<std::string> keys_ STAMPEDE_GUARDED_BY(mu_);  // queued or running
  std::size_t running_ STAMPEDE_GUARDED_BY(mu_) = 0;
  bool stopping_ STAMPEDE_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_ STAMPEDE_GUARDED_BY(mu_);
};

}  // namespace stampede
