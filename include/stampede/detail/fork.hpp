// stampede/detail/fork.hpp: noticing that this process is a fork()ed child, and abandoning the
// state the parent left behind.
//
// After fork() only the forking thread exists in the child. Every other thread of the parent is
// gone, and with it whatever it was doing: a mutex it held stays locked, a flight it led never
// completes, a socket it shared with the parent now has two readers. Each stateful part of
// stampede therefore remembers the fork generation it was built in and, when it sees a newer
// one, replaces its mutable state with a fresh one instead of touching the old. The old state is
// abandoned, never destroyed (destroying it could block on a mutex of a thread that no longer
// exists, or join such a thread): keep_abandoned() keeps it reachable, so that a leak checker
// does not report what was left on purpose.
//
//   State* s = state_.load();
//   if (s->generation != detail::fork_generation()) { install(fresh); detail::keep_abandoned(s); }
//
// The check is one relaxed load of a word that only a fork() writes, so it is cheap on hot paths.
#pragma once

#include <atomic>
#include <cstdint>

#include "stampede/export.hpp"

namespace stampede::detail {

/// The counter behind fork_generation(); only the library's pthread_atfork child handler writes
/// it. Read it through fork_generation().
STAMPEDE_EXPORT extern std::atomic<std::uint64_t> fork_generation_counter;

/// @return how many fork()s separate this process from the first process that loaded stampede:
///         0 there, incremented in each child (by a pthread_atfork child handler). Thread-safe.
inline std::uint64_t fork_generation() noexcept {
  return fork_generation_counter.load(std::memory_order_relaxed);
}

/// Keeps `state` reachable until the process exits, never destroying it: state abandoned after
/// fork() (a mutex in it may be held by a thread that does not exist in the child, a std::thread
/// in it cannot be joined). Thread-safe, lock-free, and safe in a fork()ed child.
STAMPEDE_EXPORT void keep_abandoned(const void* state) noexcept;

}  // namespace stampede::detail
