// stampede/detail/flight.hpp: in-process coalescing, one flight per key.
//
// The first caller of a key becomes the flight's leader and computes; later callers of the same
// key join the flight and wait for its result (value or exception). A value is published as soon
// as the loader returns (callers that join afterwards get it at once) and the flight leaves the
// table once the leader is done. An exception is published only after the flight left the table,
// so a caller that arrives after a failure starts a new flight instead of receiving an old error.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "stampede/detail/thread_annotations.hpp"

namespace stampede::detail {

/// Blocks while `*word == expected`, until woken or `deadline` (Linux futex; src/futex.cpp).
/// Returns on a wake-up, a changed word, a timeout or a signal: callers re-check.
void futex_wait_until(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                      std::chrono::steady_clock::time_point deadline) noexcept;
/// Wakes every thread blocked in futex_wait_until on `word`.
void futex_wake_all(const std::atomic<std::uint32_t>& word) noexcept;

/// The shared state of one flight. Thread-safe.
///
/// The result is written once, then published by a release store of `state_`; waiters block on
/// that word with a futex and, once it says done, read the result without any lock. So the N
/// waiters of a hot key wake and copy the value in parallel instead of queueing on a mutex behind
/// a condition variable (which the wave benchmark measured as most of the wake-up latency).
template <class T>
class Flight {
 public:
  /// Publishes the value and wakes the waiters. Only the first set_value/set_error counts.
  void set_value(const T& value) {
    if (!claim()) return;  // before copying: the leader calls this twice on its normal path
    value_.emplace(value);
    publish(kValue);
  }
  void set_error(std::exception_ptr error) {
    if (!claim()) return;
    error_ = std::move(error);
    publish(kError);
  }
  /// Waits for the result until `deadline`.
  /// @return a copy of the value; std::nullopt on timeout. @throws the leader's exception.
  std::optional<T> wait_until(std::chrono::steady_clock::time_point deadline) {
    for (;;) {
      const std::uint32_t s = state_.load(std::memory_order_acquire);
      if (s == kValue) return value_;  // immutable once published: no lock needed
      if (s == kError) std::rethrow_exception(error_);
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      futex_wait_until(state_, s, deadline);
    }
  }

 private:
  static constexpr std::uint32_t kPending = 0, kWriting = 1, kValue = 2, kError = 3;

  bool claim() noexcept {
    std::uint32_t expected = kPending;
    return state_.compare_exchange_strong(expected, kWriting, std::memory_order_acquire,
                                          std::memory_order_relaxed);
  }
  void publish(std::uint32_t done) noexcept {
    state_.store(done, std::memory_order_release);
    futex_wake_all(state_);
  }

  std::atomic<std::uint32_t> state_{kPending};
  std::optional<T> value_;      // written once, by the claimer, before state_ says kValue
  std::exception_ptr error_;    // written once, by the claimer, before state_ says kError
};

/// Key -> flight table, striped by key hash. Thread-safe.
template <class T>
class FlightGroup {
 public:
  struct Joined {
    std::shared_ptr<Flight<T>> flight;
    bool leader;
  };

  /// Joins the key's flight, creating it (and becoming its leader) if there is none.
  Joined join(std::string_view key) {
    Stripe& s = stripe_for(key);
    MutexLock l(s.mu);
    auto it = s.flights.find(key);
    if (it != s.flights.end()) return {it->second, false};
    auto flight = std::make_shared<Flight<T>>();
    s.flights.emplace(std::string(key), flight);
    return {std::move(flight), true};
  }

  /// Removes the key's flight from the table (the leader calls it before publishing).
  void leave(std::string_view key) {
    Stripe& s = stripe_for(key);
    MutexLock l(s.mu);
    auto it = s.flights.find(key);
    if (it != s.flights.end()) s.flights.erase(it);
  }

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  struct Stripe {
    Mutex mu;
    std::unordered_map<std::string, std::shared_ptr<Flight<T>>, Hash, std::equal_to<>> flights
        STAMPEDE_GUARDED_BY(mu);
  };
  Stripe& stripe_for(std::string_view key) noexcept {
    return stripes_[(Hash{}(key) >> 16) % stripes_.size()];
  }
  std::array<Stripe, 16> stripes_;
};

}  // namespace stampede::detail
