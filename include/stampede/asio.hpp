// stampede/asio.hpp: Cache<T> for callers on an Asio event loop or in a coroutine, whose wait for
// another caller's load holds no thread.
//
//   asio::awaitable<Item> handle(stampede::Cache<Item>& cache, int id) {
//     Item item = co_await stampede::asio::async_get_or_compute(
//         cache, "item:" + std::to_string(id), [id] { return db_load_item(id); }, asio::use_awaitable);
//     co_return item;
//   }
//
// The optional component stampede::asio (header-only; needs standalone Asio, Debian's
// libasio-dev). The completion signature is void(std::exception_ptr, T): every Asio completion
// token works (a callback, use_future, use_awaitable, deferred, as_tuple). use_awaitable and
// use_future rethrow the exception_ptr; with a callback, T is a default-constructed value when
// the exception_ptr is set.
//
// Which thread runs what (the operation's strand runs over the handler's associated executor;
// "blocking threads" are the Cache's threads for the steps that may block, see
// CacheOptions::background_load_threads):
//   - the lookup: the initiating thread when the store answers from memory (the embedded backend),
//     else a blocking thread (a Redis read is a round trip);
//   - the leader of a key's flight (lock, double check, a synchronous loader, store): a blocking
//     thread, exactly as a synchronous caller would (its own wait for another process's lock
//     included);
//   - a waiter: no thread. It is attached to the key's flight; the thread that publishes the
//     result posts its completion to the strand. Its wait_timeout is a timer on the strand, and so
//     is the flight's loader timeout;
//   - the completion: dispatched to the handler's associated executor.
//
// Cancellation: a cancellation slot bound to the token (any cancellation type) or a request on
// CallOptions::stop ends the call with cancelled_error at once; the load goes on for the key's
// other callers and is stored, and LoadContext::stop_token() is requested once every caller of it
// gave up, as for synchronous callers.
//
// Lifetime: destroying the Cache completes every call still pending on it with stampede::error
// ("the Cache was destroyed"); the destructor waits for the steps running on its blocking threads
// (a leader's loader sees its LoadContext's stop token requested once every caller of its load
// was completed). The executors the calls complete on must still run their handlers then. An
// io_context must not be destroyed while calls whose handlers it runs are pending: stop issuing
// calls, let them complete (or cancel them), then destroy it.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/dispatch.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/system_executor.hpp>
#include <atomic>
#include <chrono>
#include <concepts>
#include <exception>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include "stampede/cache.hpp"
#include "stampede/detail/deadline.hpp"
#include "stampede/errors.hpp"

namespace stampede::detail {

// The steps of Cache<T> an asynchronous call is built from (Cache<T> befriends it).
struct AsyncAccess {
  template <class T>
  static void check(const CallOptions& call, std::string_view key) {
    Cache<T>::check_call(key, call);
  }
  template <class T>
  static std::shared_ptr<AsyncCalls> calls(const Cache<T>& cache) {
    return cache.async_calls_;
  }
  template <class T>
  static bool reads_locally(const Cache<T>& cache) noexcept {
    return cache.backend_.store->reads_locally();
  }
  // @return the value of a servable entry (a refresh scheduled if due), or nothing on a miss.
  template <class T, class Loader>
  static std::optional<T> lookup(Cache<T>& cache, std::string_view key, Loader& loader) {
    const auto now = cache.clock_->now();
    if (std::optional<Entry<T>> e = cache.read_servable(key, now)) {
      cache.after_hit(key, cache.hit_of(*e, now), loader);
      return std::move(e->value);
    }
    return std::nullopt;
  }
  template <class T>
  static typename FlightGroup<T>::Joined join(Cache<T>& cache, std::string_view key) {
    return cache.flights_.join(key);
  }
  template <class T>
  static void count_miss(Cache<T>& cache) noexcept {
    cache.count(Cache<T>::Counter::misses);
  }
  // A leader that read the key before loading: hands what it found (or the read's error) to the
  // flight's waiters, as lead_flight() would.
  template <class T>
  static void publish(Cache<T>& cache, std::string_view key, Flight<T>& flight, const T& value) {
    cache.flights_.leave(key, &flight);
    (void)flight.set_value(value);
    flight.drop_interest();
  }
  template <class T>
  static void publish_error(Cache<T>& cache, std::string_view key, Flight<T>& flight,
                            std::exception_ptr error) {
    cache.flights_.leave(key, &flight);
    (void)flight.set_error(std::move(error));
    flight.drop_interest();
  }
  template <class T>
  static T lead(Cache<T>& cache, std::string_view key, LoaderRef<T> loader, std::shared_ptr<Flight<T>> flight,
                const CallOptions& call) {
    return cache.lead_flight(key, loader, std::move(flight), call);
  }
  // A leader that gives up before it loads: later callers start a new flight, the waiters join again.
  template <class T>
  static void abandon(Cache<T>& cache, std::string_view key, Flight<T>& flight) {
    cache.flights_.leave(key, &flight);
    flight.abandon();
    flight.drop_interest();
  }
  template <class T>
  static T lead_fallback(Cache<T>& cache, std::string_view key, LoaderRef<T> loader, Flight<T>& flight,
                         Flight<T>& fallback) {
    return cache.lead_fallback(key, loader, flight, fallback);
  }
  // The wait_timeout policies other than compute: the old value, or timeout_error.
  template <class T>
  static T serve_or_throw(Cache<T>& cache, std::string_view key, LoaderRef<T> loader, Flight<T>& flight,
                          const CallOptions& call) {
    return cache.on_wait_timeout(key, loader, flight, call);
  }
  template <class T>
  static bool computes_on_wait_timeout(const Cache<T>& cache) noexcept {
    return cache.options_.on_wait_timeout == OnWaitTimeout::compute;
  }
  template <class T>
  static void expire_load(Cache<T>& cache, std::string_view key, Flight<T>& flight) {
    cache.expire_load(key, flight);
  }
  template <class T>
  static std::chrono::steady_clock::time_point wait_deadline(const Cache<T>& cache, const CallOptions& call) {
    return deadline_after(cache.wait_timeout(call));
  }
  template <class T>
  static void count_shared(Cache<T>& cache, bool old) noexcept {
    cache.count(old ? Cache<T>::Counter::stale_served : Cache<T>::Counter::coalesced);
  }
  template <class T>
  static void count_wait_timeout(Cache<T>& cache, std::string_view key) noexcept {
    cache.count(Cache<T>::Counter::wait_timeouts);
    cache.emit(EventType::lock_timeout, key, "in-process flight");
  }
  template <class T>
  static std::exception_ptr cancelled(Cache<T>& cache, std::string_view key) {
    try {
      cache.throw_cancelled(key);
    } catch (...) {
      return std::current_exception();
    }
  }
  // Queues `step` on the Cache's blocking threads. @return false if the Cache is shutting down.
  template <class T, class Step>
  static bool run_blocking(Cache<T>& cache, Step&& step) {
    // The Refresher runs one task per name: each step gets a name of its own.
    const std::string id = "async#" + std::to_string(next_step.fetch_add(1, std::memory_order_relaxed));
    return cache.blocking_.submit(id, std::forward<Step>(step)) == Refresher::Submit::queued;
  }
  static inline std::atomic<std::uint64_t> next_step{0};
};

}  // namespace stampede::detail

namespace stampede::asio {
namespace detail {

// One asynchronous get_or_compute. Shared by the steps that run it (held by each posted step and,
// while it waits, by itself: the flight it is attached to holds only a raw pointer).
template <class T, class Loader, class Handler>
class GetOp final : public stampede::detail::Flight<T>::Continuation,
                    public stampede::detail::AsyncCall,
                    public std::enable_shared_from_this<GetOp<T, Loader, Handler>> {
  using Flight = stampede::detail::Flight<T>;
  using Access = stampede::detail::AsyncAccess;
  using steady = std::chrono::steady_clock;

 public:
  GetOp(Cache<T>& cache, std::string key, Loader loader, CallOptions call, Handler handler)
      : cache_(cache),
        calls_(Access::calls(cache)),
        key_(std::move(key)),
        loader_(std::move(loader)),
        call_(std::move(call)),
        handler_(std::move(handler)),
        executor_(::asio::get_associated_executor(handler_, ::asio::system_executor())),
        work_(::asio::prefer(io_executor(executor_), ::asio::execution::outstanding_work.tracked)),
        strand_(io_executor(executor_)),
        timer_(strand_) {}
  GetOp(const GetOp&) = delete;
  GetOp& operator=(const GetOp&) = delete;
  ~GetOp() override { calls_->remove(*this); }

  // On the initiating thread.
  void start() {
    auto slot = ::asio::get_associated_cancellation_slot(handler_);
    if (slot.is_connected()) {
      slot.assign([self = this->shared_from_this()](::asio::cancellation_type type) {
        if (type != ::asio::cancellation_type::none) self->cancel();
      });
    }
    if (call_.stop.stop_possible()) {
      on_stop_.emplace(call_.stop, StopRequested{this});
    }
    try {
      Access::check<T>(call_, key_);
    } catch (...) {
      return complete(std::current_exception(), T{});
    }
    if (!calls_->add(*this)) return complete(cache_destroyed(), T{});
    begin();  // the caller's Cache lives during the initiation
  }

  std::shared_ptr<stampede::detail::AsyncCall> pin() noexcept override {
    return this->weak_from_this().lock();
  }
  void abort() noexcept override {
    ::asio::post(strand_, [self = this->shared_from_this()] { self->finish(self->cache_destroyed(), T{}); });
  }

  void published() noexcept override {
    ::asio::post(strand_, [self = this->shared_from_this()] { self->on_published(); });
  }
  void limit_set() noexcept override {
    ::asio::post(strand_, [self = this->shared_from_this()] {
      if (!self->done_ && self->self_) self->arm_timer();
    });
  }

 private:
  using HandlerExecutor = ::asio::associated_executor_t<Handler, ::asio::system_executor>;

  // Where the call's own steps and timers run: the handler's executor if it is an I/O executor
  // (an io_context's, a strand), else the system executor (e.g. use_future's).
  static ::asio::any_io_executor io_executor(const HandlerExecutor& ex) {
    if constexpr (std::is_convertible_v<HandlerExecutor, ::asio::any_io_executor>) {
      return ex;
    } else {
      return ::asio::system_executor();
    }
  }

  struct StopRequested {
    GetOp* op;
    void operator()() const noexcept { op->cancel(); }
  };

  // The initiating thread, or the strand (joining again): the lookup and the join. A store that
  // reads from memory is read here, and a miss joins the key's flight. A store that reads over
  // the network (Redis) is read once per flight: the caller joins first, and the flight's leader
  // reads on a blocking thread; its waiters make no round trip at all.
  void begin() {
    const bool local = Access::reads_locally(cache_);
    try {
      if (local) {
        if (std::optional<T> v = Access::lookup(cache_, key_, loader_))
          return complete(nullptr, std::move(*v));
      }
      auto [flight, leader] = Access::join(cache_, key_);
      if (local || !leader) count_miss_once();
      ::asio::post(strand_, [self = this->shared_from_this(), flight = std::move(flight), leader,
                             read = local]() mutable { self->joined(std::move(flight), leader, read); });
    } catch (...) {
      complete(std::current_exception(), T{});
    }
  }

  void count_miss_once() noexcept {
    if (!miss_counted_) Access::count_miss(cache_);
    miss_counted_ = true;
  }

  // Strand. `read`: the store was read before the join (else the leader reads first).
  void joined(std::shared_ptr<Flight> flight, bool leader, bool read) {
    flight_ = std::move(flight);
    interest_ = !leader;  // join() counted this caller; a leader's interest is lead_flight()'s
    const auto use = calls_->use();
    if (!use) {
      if (leader) flight_->abandon();  // the flight's waiters are completed by the Cache's destructor
      return finish(cache_destroyed(), T{});
    }
    if (leader) {
      if (done_) return Access::abandon(cache_, key_, *flight_);  // cancelled before it joined
      auto step = [self = this->shared_from_this(), read] {
        if (read || self->read_first()) self->lead();
      };
      if (!Access::run_blocking(cache_, std::move(step))) {
        Access::abandon(cache_, key_, *flight_);
        finish(shutting_down(), T{});
      }
      return;
    }
    if (done_) return drop_interest();
    wait_on(*flight_, Access::wait_deadline(cache_, call_));
  }

  // A blocking thread: the leader's read, for a store that reads over the network.
  // @return true on a miss (lead the load); false if the flight got its result here.
  bool read_first() {
    try {
      if (std::optional<T> v = Access::lookup(cache_, key_, loader_)) {
        Access::publish(cache_, key_, *flight_, *v);
        complete(nullptr, std::move(*v));
        return false;
      }
      count_miss_once();  // written here, read on the strand only after this step posted
      return true;
    } catch (...) {
      Access::publish_error(cache_, key_, *flight_, std::current_exception());
      complete(std::current_exception(), T{});
      return false;
    }
  }

  // A blocking thread: leads the flight as a synchronous caller would.
  void lead() {
    CallOptions call = call_;
    call.stop = stop_.get_token();
    try {
      T value = Access::lead(cache_, key_, stampede::detail::LoaderRef<T>(loader_), flight_, call);
      complete(nullptr, std::move(value));
    } catch (...) {
      complete(std::current_exception(), T{});
    }
  }

  // Strand: attaches to `flight` (the key's flight or its fallback) until `deadline`.
  void wait_on(Flight& flight, steady::time_point deadline) {
    waiting_on_ = &flight;
    deadline_ = deadline;
    self_ = this->shared_from_this();  // the flight holds only a raw pointer
    if (!flight.attach(*this)) {
      self_.reset();
      return on_published();
    }
    arm_timer();
  }

  // Strand: the next time to look: the wait's deadline, or the flight's load limit if sooner.
  void arm_timer() {
    steady::time_point until = deadline_;
    steady::time_point limit{};
    if (waiting_on_ == flight_.get() && flight_->pending_limit(limit) && limit < until) until = limit;
    if (until == steady::time_point::max()) {
      timer_.cancel();
      return;
    }
    timer_.expires_at(until);
    timer_.async_wait([self = this->shared_from_this()](const std::error_code& ec) {
      if (!ec) self->on_timer();
    });
  }

  // Strand.
  void on_timer() {
    if (done_ || !self_) return;
    const auto use = calls_->use();
    if (!use) return;  // the Cache's destructor completes this call
    const steady::time_point now = steady::now();
    steady::time_point limit{};
    if (waiting_on_ == flight_.get() && flight_->pending_limit(limit) && now >= limit) {
      Access::expire_load(cache_, key_, *flight_);  // publishes the old value or timeout_error
      return arm_timer();
    }
    if (now < deadline_) return arm_timer();
    if (!waiting_on_->detach(*this)) return;  // published first: on_published() is on its way
    self_.reset();
    Access::count_wait_timeout(cache_, key_);
    if (Access::computes_on_wait_timeout(cache_)) return compute_fallback();
    serve_or_throw();
  }

  // Strand: OnWaitTimeout::compute. The callers of one flight that gave up share one fallback.
  void compute_fallback() {
    auto [fallback, leader] = flight_->join_fallback();
    if (!leader) return wait_on(fallback, steady::time_point::max());
    Flight* f = &fallback;
    if (!Access::run_blocking(cache_, [self = this->shared_from_this(), f] {
          try {
            T value = Access::lead_fallback(
                self->cache_, self->key_, stampede::detail::LoaderRef<T>(self->loader_), *self->flight_, *f);
            self->complete(nullptr, std::move(value));
          } catch (...) {
            self->complete(std::current_exception(), T{});
          }
        })) {
      fallback.set_error(shutting_down());
      finish(shutting_down(), T{});
    }
  }

  // Strand: OnWaitTimeout::serve_stale and throw_error.
  void serve_or_throw() {
    auto step = [self = this->shared_from_this()] {
      try {
        T value =
            Access::serve_or_throw(self->cache_, self->key_, stampede::detail::LoaderRef<T>(self->loader_),
                                   *self->flight_, self->call_);
        self->complete(nullptr, std::move(value));
      } catch (...) {
        self->complete(std::current_exception(), T{});
      }
    };
    if (Access::reads_locally(cache_)) return step();
    if (!Access::run_blocking(cache_, std::move(step))) finish(shutting_down(), T{});
  }

  // Strand: the flight this call waits on has published.
  void on_published() {
    self_.reset();
    if (done_) return;
    const auto use = calls_->use();
    if (!use) return finish(cache_destroyed(), T{});
    Flight& f = *waiting_on_;
    switch (f.outcome()) {
      case Flight::Outcome::value: {
        std::optional<T> value;
        try {
          value.emplace(f.value());
        } catch (...) {
          return finish(std::current_exception(), T{});
        }
        Access::count_shared(cache_, &f == flight_.get() && f.is_old());
        return finish(nullptr, std::move(*value));
      }
      case Flight::Outcome::error:
        return finish(f.error(), T{});
      case Flight::Outcome::abandoned:  // the leader gave up before loading: join again
        drop_interest();
        waiting_on_ = nullptr;
        flight_.reset();
        return begin();
      case Flight::Outcome::pending:
        break;
    }
  }

  // Any thread (a cancellation slot, a stop request).
  void cancel() {
    ::asio::post(strand_, [self = this->shared_from_this()] { self->on_cancel(); });
  }
  // Strand.
  void on_cancel() {
    if (done_) return;
    stop_.request_stop();  // a leader that has not loaded yet gives up; one that loads goes on
    if (self_ && waiting_on_->detach(*this)) self_.reset();
    const auto use = calls_->use();
    if (!use) return finish(cache_destroyed(), T{});
    finish(Access::cancelled(cache_, key_), T{});
  }

  // Any thread: finishes on the strand.
  void complete(std::exception_ptr error, T value) {
    ::asio::post(strand_,
                 [self = this->shared_from_this(), error = std::move(error),
                  value = std::move(value)]() mutable { self->finish(std::move(error), std::move(value)); });
  }

  // Strand: completes the call once; later results (a leader's load after a cancellation) are dropped.
  void finish(std::exception_ptr error, T value) {
    if (done_) return;
    done_ = true;
    calls_->remove(*this);
    stop_.request_stop();  // a leader's load loses this caller's interest (if it still runs)
    timer_.cancel();
    drop_interest();
    on_stop_.reset();
    ::asio::get_associated_cancellation_slot(handler_).clear();
    ::asio::dispatch(executor_,
                     [handler = std::move(handler_), error = std::move(error),
                      value = std::move(value)]() mutable { handler(std::move(error), std::move(value)); });
  }

  void drop_interest() noexcept {
    if (interest_) {
      interest_ = false;
      flight_->drop_interest();
    }
  }

  std::exception_ptr cache_destroyed() const {
    return std::make_exception_ptr(
        error("stampede: the Cache was destroyed before the call for '" + key_ + "' completed"));
  }
  std::exception_ptr shutting_down() const {
    return std::make_exception_ptr(
        error("stampede: the Cache is shutting down; the call for '" + key_ + "' did not run"));
  }

  Cache<T>& cache_;  // used only while a Use of calls_ says it lives (or on its blocking threads)
  const std::shared_ptr<stampede::detail::AsyncCalls> calls_;
  const std::string key_;
  Loader loader_;
  const CallOptions call_;
  Handler handler_;
  const HandlerExecutor executor_;
  const ::asio::any_io_executor work_;  // keeps the loop of the call's I/O executor running meanwhile
  ::asio::strand<::asio::any_io_executor> strand_;
  ::asio::steady_timer timer_;
  std::stop_source stop_;  // requested when this call is cancelled: a leader's stop token
  std::optional<std::stop_callback<StopRequested>> on_stop_;

  // Written on the strand only (begin() and read_first() write miss_counted_ in steps that
  // come before the strand sees it).
  bool miss_counted_ = false;
  bool done_ = false;
  bool interest_ = false;           // this caller's interest in flight_ (a waiter's) is held
  std::shared_ptr<Flight> flight_;  // the key's flight this call joined
  Flight* waiting_on_ = nullptr;    // flight_ or its fallback, while waiting
  std::shared_ptr<GetOp> self_;     // set while attached to waiting_on_
  steady::time_point deadline_{};
};

}  // namespace detail

/// Returns the cached value of `key`, or loads it once for all concurrent callers (synchronous and
/// asynchronous ones share one flight); as Cache::get_or_compute(), with a completion token.
///
///   cache_value = co_await stampede::asio::async_get_or_compute(cache, key, loader, asio::use_awaitable);
///
/// @param cache must outlive the call.
/// @param key non-empty; any bytes.
/// @param loader a synchronous loader (as for get_or_compute); it runs on a blocking thread of the
///        Cache, never on the caller's thread. Moved or copied into the call.
/// @param call per-call options; call.stop cancels as a cancellation slot does.
/// @param token an Asio completion token for void(std::exception_ptr, T).
/// @return what the token's async_result makes of it.
/// Errors (in the exception_ptr): as get_or_compute() (std::invalid_argument for an empty key or a
/// negative call.wait_timeout, what the loader throws, timeout_error, backend_error); also
/// cancelled_error (cancelled), and stampede::error if the Cache was shutting down.
template <class T, class Loader, class CompletionToken>
  requires LoaderFor<std::decay_t<Loader>, T> && std::default_initializable<T>
auto async_get_or_compute(Cache<T>& cache, std::string_view key, Loader&& loader, const CallOptions& call,
                          CompletionToken&& token) {
  return ::asio::async_initiate<CompletionToken, void(std::exception_ptr, T)>(
      [&cache](auto handler, std::string k, std::decay_t<Loader> l, CallOptions c) {
        using Op = detail::GetOp<T, std::decay_t<Loader>, std::decay_t<decltype(handler)>>;
        std::make_shared<Op>(cache, std::move(k), std::move(l), std::move(c), std::move(handler))->start();
      },
      token, std::string(key), std::forward<Loader>(loader), call);
}

/// async_get_or_compute() with the default CallOptions.
template <class T, class Loader, class CompletionToken>
  requires LoaderFor<std::decay_t<Loader>, T> && std::default_initializable<T>
auto async_get_or_compute(Cache<T>& cache, std::string_view key, Loader&& loader, CompletionToken&& token) {
  return async_get_or_compute(cache, key, std::forward<Loader>(loader), CallOptions{},
                              std::forward<CompletionToken>(token));
}

}  // namespace stampede::asio
