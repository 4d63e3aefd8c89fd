// stampede/detail/flight.hpp: in-process coalescing, one flight per key.
//
// The first caller of a key becomes the flight's leader and computes; later callers of the same
// key join the flight and wait for its result (value or exception). A value is published as soon
// as the loader returns (callers that join afterwards get it at once) and the flight leaves the
// table once the leader is done. An exception is published only after the flight left the table,
// so a caller that arrives after a failure starts a new flight instead of receiving an old error.
#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
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

/// The shared state of one flight. Thread-safe.
template <class T>
class Flight {
 public:
  /// Publishes the value and wakes the waiters. Only the first set_value/set_error counts.
  void set_value(T value) {
    {
      MutexLock l(mu_);
      if (done_) return;
      value_.emplace(std::move(value));
      done_ = true;
    }
    cv_.notify_all();
  }
  void set_error(std::exception_ptr error) {
    {
      MutexLock l(mu_);
      if (done_) return;
      error_ = std::move(error);
      done_ = true;
    }
    cv_.notify_all();
  }
  /// Waits for the result until `deadline`.
  /// @return the value; std::nullopt on timeout. @throws the leader's exception.
  std::optional<T> wait_until(std::chrono::steady_clock::time_point deadline) {
    MutexLock l(mu_);
    if (!cv_.wait_until(l, deadline, [this]() STAMPEDE_REQUIRES(mu_) { return done_; })) {
      return std::nullopt;
    }
    if (error_) std::rethrow_exception(error_);
    return value_;  // a copy: every waiter gets its own T
  }

 private:
  Mutex mu_;
  std::condition_variable_any cv_;
  bool done_ STAMPEDE_GUARDED_BY(mu_) = false;
  std::optional<T> value_ STAMPEDE_GUARDED_BY(mu_);
  std::exception_ptr error_ STAMPEDE_GUARDED_BY(mu_);
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
