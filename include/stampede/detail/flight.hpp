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
// A waiter that holds no thread (an asynchronous caller) attaches a Continuation instead of
// blocking: the thread that publishes the result calls it.
//
//   auto [flight, leader] = flights.join(key);
//   if (!leader) flight->wait_until(deadline, stop, value);          // a copy of the leader's value
//   flight->set_value(load()); flights.leave(key, flight.get());
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <stop_token>
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
/// variable (which the wave benchmark measured as most of the wake-up latency). The word's low two
/// bits are the state; the bits above count wake-ups asked for by stop requests (a stop callback
/// bumps them and wakes the waiters, so a request between a waiter's check and its futex wait is
/// never lost).
///
/// Interest: the callers that still want this flight's load (its leader and each waiter) are
/// counted; when the last one gives up, load_stop_token() is requested (the loader may abort) and
/// the flight can no longer be joined (FlightGroup::join starts a new one instead).
template <class T>
class Flight {
 public:
  /// What join_fallback() returns: the fallback flight, and whether the caller leads it.
  struct Fallback {
    Flight& flight;
    bool leader;
  };
  /// How a wait ended.
  enum class Wait {
    value,      ///< the value was published (and copied out)
    timeout,    ///< the deadline passed first
    stopped,    ///< the caller's stop token was requested first
    abandoned,  ///< the leader gave up before loading: join again (the flight left the table)
    load_late,  ///< the load limit (set_load_limit) passed first: apply it if claim_expiry(), wait again
  };

  /// What the flight has published so far (outcome()).
  enum class Outcome { pending, value, error, abandoned };

  /// A waiter that holds no thread. The flight calls published() once, on the thread that
  /// publishes its result (outcome() then says which), after the futex waiters were woken and with
  /// no lock held; and limit_set() on the thread that sets a load limit, for each continuation
  /// attached at that time, under the flight's continuation lock. Both must be short (e.g. hand
  /// work elsewhere); limit_set() must not call attach() or detach(). A continuation must stay
  /// alive until it was detached, or until published() was called.
  class Continuation {
   public:
    virtual void published() noexcept = 0;
    virtual void limit_set() noexcept = 0;

   protected:
    Continuation() = default;
    virtual ~Continuation() = default;
    Continuation(const Continuation&) = delete;
    Continuation& operator=(const Continuation&) = delete;

   private:
    friend class Flight;
    Continuation* prev_ = nullptr;
    Continuation* next_ = nullptr;
  };

  Flight() = default;
  ~Flight() { delete fallback_.load(std::memory_order_acquire); }
  Flight(const Flight&) = delete;
  Flight& operator=(const Flight&) = delete;

  /// Publishes the value, also to the fallback flight if one has started, and wakes the waiters.
  /// Only the first set_value/set_error/abandon counts. If copying the value throws, the waiters
  /// get that exception instead (the caller still has its value).
  /// @param old true for a value older than the load (a loader timeout served it): see is_old().
  /// @return false if a result was published before (this call changed nothing).
  bool set_value(const T& value, bool old = false) noexcept {
    if (!claim()) return false;  // before copying: the leader calls this twice on its normal path
    old_ = old;
    try {
      value_.emplace(value);
    } catch (...) {
      error_ = std::current_exception();
      publish(kError);
      return true;
    }
    publish(kValue);
    // seq_cst, as the store in publish() and the exchange in join_fallback(): either this load
    // sees a fallback that has started, or that fallback's leader sees this value.
    if (Flight* fallback = fallback_.load(std::memory_order_seq_cst)) fallback->set_value(value, old);
    return true;
  }
  /// @return false if a result was published before (this call changed nothing).
  bool set_error(std::exception_ptr error) noexcept {
    if (!claim()) return false;
    error_ = std::move(error);
    publish(kError);
    return true;
  }
  /// Tells the waiters that the leader gave up before loading: each joins the key again.
  void abandon() noexcept {
    if (claim()) publish(kAbandoned);
  }
  /// Sets the time by which the flight's load (running in the background) must have published,
  /// and the old value its callers get if it has not (none: they get an error). Once, by the
  /// leader; every caller's wait_until() then ends with Wait::load_late at that time, so whichever
  /// caller wakes first applies the limit (claim_expiry()), whether or not the leader still waits.
  /// Wakes the waiters, so that those already waiting wait until the limit too.
  void set_load_limit(std::chrono::steady_clock::time_point limit, std::optional<T> old) {
    limit_old_ = std::move(old);
    limit_ = limit;
    has_limit_.store(true, std::memory_order_release);
    state_.fetch_add(kWakeStep, std::memory_order_seq_cst);
    futex_wake_all(state_);
    MutexLock l(continuations_mu_);
    for (Continuation* c = continuations_; c != nullptr; c = c->next_) c->limit_set();
  }
  /// @return true (and the limit, in `limit`) if set_load_limit() was called and the limit has
  ///         not been applied yet (claim_expiry()).
  [[nodiscard]] bool pending_limit(std::chrono::steady_clock::time_point& limit) const noexcept {
    if (!has_limit_.load(std::memory_order_acquire) || expired_.load(std::memory_order_acquire)) return false;
    limit = limit_;
    return true;
  }
  /// @return the old value set with the load limit (read only after a wait returned load_late).
  [[nodiscard]] const std::optional<T>& limit_old() const noexcept { return limit_old_; }
  /// @return true for exactly one caller after the load limit passed: the one that applies it.
  [[nodiscard]] bool claim_expiry() noexcept { return !expired_.exchange(true, std::memory_order_acq_rel); }

  /// Waits for the result until `deadline` or a request on `stop`, whichever comes first (or the
  /// load limit, if one is set and passes first).
  /// @param out receives a copy of the value (Wait::value only).
  /// @return how the wait ended. @throws the leader's exception.
  Wait wait_until(std::chrono::steady_clock::time_point deadline, const std::stop_token& stop,
                  std::optional<T>& out) {
    // Wakes this flight's waiters (they re-check); changing the word first closes the window
    // between a waiter's stop check and its futex wait.
    std::stop_callback on_stop(stop, [this]() noexcept {
      state_.fetch_add(kWakeStep, std::memory_order_seq_cst);
      futex_wake_all(state_);
    });
    for (;;) {
      const std::uint32_t word = state_.load(std::memory_order_acquire);
      switch (word & kStateMask) {
        case kValue:
          out = value_;  // immutable once published: no lock needed
          return Wait::value;
        case kError:
          std::rethrow_exception(error_);
        case kAbandoned:
          return Wait::abandoned;
        default:
          break;
      }
      if (stop.stop_requested()) return Wait::stopped;
      const auto now = std::chrono::steady_clock::now();
      auto until = deadline;
      // Read after `word`: a limit set after that read has changed the word since.
      if (has_limit_.load(std::memory_order_acquire)) {
        if (now >= limit_ && !expired_.load(std::memory_order_acquire)) return Wait::load_late;
        if (!expired_.load(std::memory_order_acquire)) until = std::min(until, limit_);
      }
      if (now >= deadline) return Wait::timeout;
      futex_wait_until(state_, word, until);
    }
  }
  /// Attaches a waiter that holds no thread; see Continuation.
  /// @return false if a result is published already (`c` is not attached: read outcome() now).
  [[nodiscard]] bool attach(Continuation& c) {
    MutexLock l(continuations_mu_);
    if (continuations_closed_) return false;
    c.prev_ = nullptr;
    c.next_ = continuations_;
    if (continuations_ != nullptr) continuations_->prev_ = &c;
    continuations_ = &c;
    return true;
  }
  /// Detaches `c` (a waiter that gives up: a timeout, a cancellation).
  /// @return true if `c` was still attached (published() will never be called for it); false if
  ///         the result was published first (published() is called, or was).
  [[nodiscard]] bool detach(Continuation& c) {
    MutexLock l(continuations_mu_);
    if (continuations_closed_) return false;
    if (c.prev_ != nullptr) c.prev_->next_ = c.next_;
    if (c.next_ != nullptr) c.next_->prev_ = c.prev_;
    if (continuations_ == &c) continuations_ = c.next_;
    c.prev_ = c.next_ = nullptr;
    return true;
  }
  /// @return what the flight has published (never waits). After Outcome::value, value() and
  ///         is_old() may be read; after Outcome::error, error().
  [[nodiscard]] Outcome outcome() const noexcept {
    switch (state_.load(std::memory_order_acquire) & kStateMask) {
      case kValue:
        return Outcome::value;
      case kError:
        return Outcome::error;
      case kAbandoned:
        return Outcome::abandoned;
      default:
        return Outcome::pending;
    }
  }
  /// @return the published value (only after outcome() said Outcome::value).
  [[nodiscard]] const T& value() const noexcept { return *value_; }
  /// @return the published error (only after outcome() said Outcome::error).
  [[nodiscard]] const std::exception_ptr& error() const noexcept { return error_; }

  /// @return true if the published value is an old one (set_value(v, true)); read it only after a
  ///         wait returned Wait::value.
  [[nodiscard]] bool is_old() const noexcept { return old_; }
  /// @return a copy of the value if it is published, else std::nullopt (never waits or throws
  ///         the leader's exception).
  std::optional<T> value_if_published() const {
    if ((state_.load(std::memory_order_seq_cst) & kStateMask) == kValue) return value_;
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

  /// Counts one more interested caller, unless every caller has given up already.
  /// @return false if the flight's load is no longer wanted (join a new flight instead).
  [[nodiscard]] bool add_interest() noexcept {
    std::uint32_t n = interest_.load(std::memory_order_relaxed);
    while (n != 0) {
      if (interest_.compare_exchange_weak(n, n + 1, std::memory_order_acq_rel)) return true;
    }
    return false;
  }
  /// One interested caller gave up (or is done); the last one requests load_stop_token().
  void drop_interest() noexcept {
    if (interest_.fetch_sub(1, std::memory_order_acq_rel) == 1) load_stop_.request_stop();
  }
  /// Requested once every caller of this flight has given up (the loader may stop working).
  [[nodiscard]] std::stop_token load_stop_token() const noexcept { return load_stop_.get_token(); }
  /// Requests load_stop_token() whoever still waits (the Cache is being destroyed).
  void request_load_stop() noexcept { load_stop_.request_stop(); }

 private:
  static constexpr std::uint32_t kPending = 0, kWriting = 1, kValue = 2, kError = 3, kAbandoned = 4;
  static constexpr std::uint32_t kStateMask = 7, kWakeStep = 8;

  bool claim() noexcept {
    std::uint32_t word = state_.load(std::memory_order_relaxed);
    while ((word & kStateMask) == kPending) {
      if (state_.compare_exchange_weak(word, (word & ~kStateMask) | kWriting, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }
  void publish(std::uint32_t done) noexcept {
    state_.store(done, std::memory_order_seq_cst);  // seq_cst: see set_value()
    futex_wake_all(state_);
    Continuation* c = nullptr;
    {
      MutexLock l(continuations_mu_);
      continuations_closed_ = true;
      c = std::exchange(continuations_, nullptr);
    }
    while (c != nullptr) {
      Continuation* next = c->next_;  // read first: published() may end c's life
      c->published();
      c = next;
    }
  }

  std::atomic<std::uint32_t> state_{kPending};  // state in kStateMask, wake-up count above it
  std::optional<T> value_;                      // written once, by the claimer, before state_ says kValue
  bool old_ = false;                            // written once, by the claimer, before state_ says kValue
  std::exception_ptr error_;                    // written once, by the claimer, before state_ says kError
  std::atomic<Flight*> fallback_{nullptr};      // owned; set once, by join_fallback()
  std::atomic<std::uint32_t> interest_{1};      // the leader, plus each waiter that joined
  std::stop_source load_stop_;
  // The load limit: written once, by the leader, before has_limit_ says so.
  std::chrono::steady_clock::time_point limit_{};
  std::optional<T> limit_old_;
  std::atomic<bool> has_limit_{false};
  std::atomic<bool> expired_{false};  // claimed by the caller that applies the limit
  // The waiters that hold no thread: a list, closed (and emptied) by publish().
  Mutex continuations_mu_;
  Continuation* continuations_ STAMPEDE_GUARDED_BY(continuations_mu_) = nullptr;
  bool continuations_closed_ STAMPEDE_GUARDED_BY(continuations_mu_) = false;
};

/// One caller's interest in a flight, dropped once (by drop() or the destructor). Thread-safe:
/// drop() may race with itself (a stop callback and the caller's own exit).
template <class T>
class FlightInterest {
 public:
  explicit FlightInterest(Flight<T>& flight) : flight_(flight) {}
  ~FlightInterest() { drop(); }
  FlightInterest(const FlightInterest&) = delete;
  FlightInterest& operator=(const FlightInterest&) = delete;
  void drop() noexcept {
    if (!dropped_.exchange(true, std::memory_order_acq_rel)) flight_.drop_interest();
  }

 private:
  Flight<T>& flight_;
  std::atomic<bool> dropped_{false};
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

  /// Joins the key's flight (counting the caller's interest), creating it (and becoming its
  /// leader) if there is none or if every caller of the one there gave up.
  Joined join(std::string_view key) {
    Stripe& s = stripe_for(key);
    MutexLock l(s.mu);
    auto it = s.flights.find(key);
    if (it != s.flights.end()) {
      if (it->second->add_interest()) return {it->second, false};
      s.flights.erase(it);  // every caller gave up on that load: start a new one
    }
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
