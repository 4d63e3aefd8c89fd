// stampede/detail/futex.hpp: wait on a 32-bit atomic word until another thread changes it (Linux futex).
//
// A flight's waiters block on its state word and wake in parallel once it is published, instead of
// queueing on a mutex behind a condition variable.
//
//   while (word.load() == kPending) detail::futex_wait_until(word, kPending, deadline);
//   word.store(kDone); detail::futex_wake_all(word);                  // on the other thread
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "stampede/export.hpp"

namespace stampede::detail {

/// Blocks while `word == expected`, until woken or `deadline`; time_point::max() waits without a
/// deadline. Returns on a wake-up, a changed word, a timeout or a signal: callers re-check.
STAMPEDE_EXPORT void futex_wait_until(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                                      std::chrono::steady_clock::time_point deadline) noexcept;
/// Wakes every thread blocked in futex_wait_until on `word`.
STAMPEDE_EXPORT void futex_wake_all(const std::atomic<std::uint32_t>& word) noexcept;

}  // namespace stampede::detail
