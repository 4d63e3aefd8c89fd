// stampede/detail/refresher.hpp: a bounded background executor that runs at most one task per key.
//
// A Cache's SWR and early refreshes go through it: one task per key to refresh. A key already
// queued or running is not queued again; when the queue is full the task is dropped (and the
// caller counts it).
//
//   detail::Refresher r({.threads = 2, .queue = 1024});
//   r.submit("item:1", [] { refresh_item_1(); });   // Submit::queued
//   r.submit("item:1", [] { refresh_item_1(); });   // Submit::duplicate while the first is pending
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include "stampede/detail/fork.hpp"
#include "stampede/detail/string_hash.hpp"
#include "stampede/detail/thread_annotations.hpp"
#include "stampede/export.hpp"

namespace stampede::detail {

/// Thread-safe. Threads start on the first submit (a Cache that never refreshes starts none).
///
/// Lifetime: stop() (and the destructor) discards queued tasks that have not started, waits for
/// running tasks to finish, and joins the threads; after it, submit() returns Submit::stopped.
/// A task must therefore not wait for a thing that only the Refresher's owner's destruction
/// would provide. Tasks must not throw; an exception escaping a task is swallowed.
///
/// A task may stop or destroy the Refresher that runs it (e.g. by dropping the last reference to
/// the Refresher's owner): stop() then waits for the other running tasks and detaches the calling
/// worker instead of joining it. The workers share the queue and its lock with the Refresher
/// (a core that lives as long as its last user), so a worker never touches a destroyed Refresher.
///
/// fork(): in a fork()ed child the parent's queue and threads are abandoned (never run, joined or
/// destroyed; the parent's queued and running tasks do not exist for the child), and the child
/// gets an empty queue whose threads start on its first submit. wait_idle() there waits only for
/// the child's own tasks.
class STAMPEDE_EXPORT Refresher {
 public:
  struct Options {
    std::size_t threads = 1;   ///< worker threads; >= 1
    std::size_t queue = 1024;  ///< tasks waiting for a thread; >= 1
    /// Accept a task only when a thread is idle to run it at once: nothing waits behind another
    /// key's task (submit() returns dropped instead).
    bool idle_only = false;
  };
  enum class Submit { queued, duplicate, dropped, stopped };

  /// @throws std::invalid_argument if threads or queue is 0.
  explicit Refresher(Options options);
  ~Refresher();
  Refresher(const Refresher&) = delete;
  Refresher& operator=(const Refresher&) = delete;

  /// Queues `task` for `key` unless the key is already queued or running.
  /// @return queued, duplicate (already pending), dropped (queue full; with idle_only, no thread
  ///         idle) or stopped (after stop()).
  Submit submit(std::string_view key, std::function<void()> task);
  /// Lock-free hint for hot paths: true means `key` is very likely queued or running (a 64-bit hash
  /// matched), so a caller can skip building a task. false means "maybe not": call submit().
  [[nodiscard]] bool probably_pending(std::string_view key) const noexcept {
    const Core& core = **core_.load(std::memory_order_acquire);
    if (core.generation != fork_generation()) return false;  // a fork()ed child's first use
    const std::uint64_t h = hash(key);
    return core.hints[h % kHints].load(std::memory_order_relaxed) == h;
  }
  /// Discards queued tasks, waits for running ones, joins the threads (detaches the calling
  /// thread if it is one of them). Idempotent.
  void stop() noexcept;
  /// Blocks until nothing is queued or running (tests and orderly shutdown); returns at once
  /// after stop().
  void wait_idle();

 private:
  static constexpr std::size_t kHints = 256;
  struct Task {
    std::string key;
    std::function<void()> fn;
  };
  /// The queue, its lock and its threads: shared by the Refresher and its workers.
  struct Core {
    Core(Options o, std::uint64_t g) : options(o), generation(g) {}
    const Options options;
    const std::uint64_t generation;  // the fork generation it was built in
    // One slot per hash bucket holding the hash of a pending key. Readers only load (no shared
    // writes on the stale-hit path); submit/run write it under mu.
    std::array<std::atomic<std::uint64_t>, kHints> hints{};
    Mutex mu;
    std::condition_variable_any work_cv;
    std::condition_variable_any idle_cv;
    std::deque<Task> queue STAMPEDE_GUARDED_BY(mu);
    std::unordered_set<std::string> keys STAMPEDE_GUARDED_BY(mu);  // queued or running
    std::size_t running STAMPEDE_GUARDED_BY(mu) = 0;
    bool stopping STAMPEDE_GUARDED_BY(mu) = false;
    std::vector<std::thread> threads STAMPEDE_GUARDED_BY(mu);
  };

  /// @return the current core; in a fork()ed child, a fresh one (the parent's is abandoned).
  const std::shared_ptr<Core>& core();
  static void run(const std::shared_ptr<Core>& shared) noexcept;
  static void clear_hint(Core& core, std::string_view key) noexcept;
  static std::uint64_t hash(std::string_view key) noexcept {
    return StringHash{}(key) | 1;  // never 0, the empty slot
  }

  // The Refresher's own reference to the current core. Replaced (with a compare-exchange) only
  // in a fork()ed child, whose first call abandons the parent's (never frees it).
  std::atomic<std::shared_ptr<Core>*> core_;
};

}  // namespace stampede::detail
