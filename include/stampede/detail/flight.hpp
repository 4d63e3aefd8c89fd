// stampede/detail/flight.hpp: in-process coalescing, one flight per key.
//
// The first caller of a key becomes the flight's leader and computes; later callers of the same
// key join the flight and wait for its result (value or exception). A value is published as soon
// as the loader returns (callers that join afterwards get it at once) and the flight leaves the
// table once the leader is done. An exception is published only after the flight left the table,
// so a caller that arrives after a failure starts a new flight instead of receiving an old error.
// invalidate() and put() detach the key's flight: a caller that arrives after them starts a new
// flight instead of joining a load that began before them.
//
// Callers that give up waiting (OnWaitTimeout::compute) share one fallback flight per flight: the
// first of them loads for all, and a value of the flight itself completes the fallback too.
//
//   auto [flight, leader] = flights.join(key);
//   if (!leader) return flight->wait_until(deadline);              // a copy of the leader's value
//   flight->set_value(load()); flights.leave(key, flight.get());
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "stampede/detail/fork.hpp"
#include "stampede/detail/futex.hpp"
#include "stampede/detail/string_hash.hpp"
#include "stampede/detail/thread_annotations.hpp"

namespace stampede::detail {

/// The shared state of one flight. Thread-safe. Lives as long as its last holder (the leader and
/// each waiter hold it); it owns its fallback flight.
///
/// The result is written once, then published by a store of `state_`; waiters block on that word
/// with a futex and, once it says done, read the result without any lock. So the N waiters of a
/// hot key wake and copy the value in parallel instead of queueing on a mutex behind a condition
/// variable (which the wave benchmark measured as most of the wake-up latency).
template <class T>
class Flight {
 public:
  /// What join_fallback() returns: the fallback flight, and whether the caller leads it.
  struct Fallback {
    Flight& flight;
    bool leader;
  };

  Flight() = default;
  ~Flight() { delete fallback_.load(std::memory_order_acquire); }
  Flight(const Flight&) = delete;
  Flight& operator=(const Flight&) = delete;

  /// Publishes the value, also to the fallback flight if one has started, and wakes the waiters.
  /// Only the first set_value/set_error counts. If copying the value throws, the waiters get that
  /// exception instead (the caller still has its value).
  void set_value(const T& value) noexcept {
    if (!claim()) return;  // before copying: the leader calls this twice on its normal path
    try {
      value_.emplace(value);
    } catch (...) {
      error_ = std::current_exception();
      publish(kError);
      return;
    }
    publish(kValue);
    // seq_cst, as the store in publish() and the exchange in join_fallback(): either this load
    // sees a fallback that has started, or that fallback's leader sees this value.
    if (Flight* fallback = fallback_.load(std::memory_order_seq_cst)) fallback->set_value(value);
  }
  void set_error(std::exception_ptr error) noexcept {
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
  /// Waits for the result without a deadline. @return a copy of the value.
  /// @throws the leader's exception.
  T wait() { return *wait_until(std::chrono::steady_clock::time_point::max()); }
  /// @return a copy of the value if it is published, else std::nullopt (never waits or throws
  ///         the leader's exception).
  std::optional<T> value_if_published() const {
    if (state_.load(std::memory_order_seq_cst) == kValue) return value_;
    return std::nullopt;
  }
  /// Joins the fallback flight of this flight's callers that gave up waiting, creating it (and
  /// becoming its leader) if there is none. Its leader loads and publishes to it; a value
  /// published to this flight is published to it too.
  Fallback join_fallback() {
    Flight* current = fallback_.load(std::memory_order_acquire);
    if (current != nullptr) return {*current, false};
    auto fresh = std::make_unique<Flight>();
    if (fallback_.compare_exchange_strong(current, fresh.get(), std::memory_order_seq_cst)) {
      return {*fresh.release(), true};  // owned by this flight from now on
    }
    return {*current, false};
  }

 private:
  static constexpr std::uint32_t kPending = 0, kWriting = 1, kValue = 2, kError = 3;

  bool claim() noexcept {
    std::uint32_t expected = kPending;
    return state_.compare_exchange_strong(expected, kWriting, std::memory_order_acquire,
                                          std::memory_order_relaxed);
  }
  void publish(std::uint32_t done) noexcept {
    state_.store(done, std::memory_order_seq_cst);  // seq_cst: see set_value()
    futex_wake_all(state_);
  }

  std::atomic<std::uint32_t> state_{kPending};
  std::optional<T> value_;                  // written once, by the claimer, before state_ says kValue
  std::exception_ptr error_;                // written once, by the claimer, before state_ says kError
  std::atomic<Flight*> fallback_{nullptr};  // owned; set once, by join_fallback()
};

/// Key -> flight table, striped by key hash. Thread-safe.
///
/// fork(): the table lives in a state object that records the fork generation it was built in.
/// The first call in a fork()ed child builds a fresh, empty state and abandons the parent's (never
/// destroys it: its mutexes may be held by threads that do not exist in the child). The child's
/// callers therefore start new flights instead of joining flights whose leaders stayed behind.
template <class T>
class FlightGroup {
 public:
  struct Joined {
    std::shared_ptr<Flight<T>> flight;
    bool leader;
  };

  FlightGroup() : state_(new State(fork_generation())) {}
  ~FlightGroup() { delete state_.load(std::memory_order_acquire); }
  FlightGroup(const FlightGroup&) = delete;
  FlightGroup& operator=(const FlightGroup&) = delete;

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

  /// Removes `flight` from the table if it is still the key's flight (its leader calls it when
  /// done; a detach() may have put a newer flight in its place meanwhile).
  void leave(std::string_view key, const Flight<T>* flight) {
    Stripe& s = stripe_for(key);
    MutexLock l(s.mu);
    auto it = s.flights.find(key);
    if (it != s.flights.end() && it->second.get() == flight) s.flights.erase(it);
  }

  /// Removes the key's flight, whoever leads it, so that callers that arrive afterwards start a
  /// new flight. The detached flight's leader and waiters carry on.
  void detach(std::string_view key) {
    Stripe& s = stripe_for(key);
    MutexLock l(s.mu);
    auto it = s.flights.find(key);
    if (it != s.flights.end()) s.flights.erase(it);
  }

 private:
  struct Stripe {
    Mutex mu;
    std::unordered_map<std::string, std::shared_ptr<Flight<T>>, StringHash, StringEqual> flights
        STAMPEDE_GUARDED_BY(mu);
  };
  static constexpr std::size_t kStripes = 16;
  struct State {
    explicit State(std::uint64_t g) : generation(g) {}
    const std::uint64_t generation;  // the fork generation it was built in
    std::array<Stripe, kStripes> stripes;
  };

  Stripe& stripe_for(std::string_view key) { return state().stripes[(StringHash{}(key) >> 16) % kStripes]; }
  // The current state; in a fork()ed child, a fresh one (the parent's is abandoned).
  State& state() {
    const std::uint64_t generation = fork_generation();
    State* s = state_.load(std::memory_order_acquire);
    while (s->generation != generation) {
      auto fresh = std::make_unique<State>(generation);
      if (state_.compare_exchange_strong(s, fresh.get(), std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
        keep_abandoned(s);
        s = fresh.release();
      }  // else `s` is now the state another thread installed: check it
    }
    return *s;
  }

  std::atomic<State*> state_;
};

}  // namespace stampede::detail
