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
// Which thread runs what ("blocking threads" are the Cache's threads for the steps that may
// block, see CacheOptions::background_load_threads; "the call's executor" is the handler's
// associated executor when that is an I/O executor, else the system executor):
//   - the lookup: the initiating thread when the store answers from memory (the embedded backend),
//     else a blocking thread (a Redis read is a round trip), once per flight: the flight's leader;
//   - the leader of a key's flight (lock, double check, a synchronous loader, store): a blocking
//     thread, exactly as a synchronous caller would (its own wait for another process's lock
//     included);
//   - a waiter: no thread. It is attached to the key's flight; the thread that publishes the
//     result posts its completion to the call's executor. Its wait_timeout is a timer there, and
//     so is the flight's loader timeout;
//   - the completion: dispatched to the handler's associated executor (never inside the initiating
//     function).
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
#include <asio/system_executor.hpp>
#include <atomic>
#include <chrono>
#include <concepts>
#include <exception>
#include <memory>
#include <mutex>
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
  // @return the value of a servable entry (a refresh scheduled if due, with the loader `copy`
  //         makes), or nothing on a miss.
  template <class T>
  static std::optional<T> lookup(Cache<T>& cache, std::string_view key, FunctionRef<OwnedLoader<T>()> copy) {
    const auto now = cache.clock_->now();
    if (std::optional<Entry<T>> e = cache.read_servable(key, now)) {
      const auto hit = cache.hit_of(*e, now);
      cache.count(hit.stale ? Cache<T>::Counter::stale_hits : Cache<T>::Counter::hits);
      if (hit.refresh && !cache.refresher_.probably_pending(key))
        cache.schedule_refresh_of(key, hit.fence, copy);
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

// The calls that a flight's publish made ready, per execution context. The publisher pushes each
// call onto a lock-free stack and posts one drain when the stack was empty, instead of one post
// per call; a drain splits a long batch in halves and posts one half, so every thread running the
// context resumes calls. Thread-safe.
class ReadyCalls final : public ::asio::execution_context::service {
 public:
  // A call that can be made ready: run() is called once per push, on a thread of the context.
  class Node {
   public:
    virtual void run() noexcept = 0;

   protected:
    Node() = default;
    virtual ~Node() = default;
    Node(const Node&) = delete;
    Node& operator=(const Node&) = delete;

   private:
    friend class ReadyCalls;
    Node* next_ = nullptr;
  };

  static inline ::asio::execution_context::id id;  // NOLINT: Asio's service identity
  explicit ReadyCalls(::asio::execution_context& context) : service(context) {}

  // @param node stays alive until its run() (it holds a reference to itself).
  // @param ex where to post a drain: an executor of this context.
  void push(Node& node, const ::asio::any_io_executor& ex) noexcept {
    Node* old = head_.load(std::memory_order_relaxed);
    do {
      node.next_ = old;
    } while (!head_.compare_exchange_weak(old, &node, std::memory_order_release, std::memory_order_relaxed));
    if (old == nullptr) ::asio::post(ex, [this, ex] { run_batch(take(), ex); });
  }

 private:
  static constexpr std::size_t kBatch = 256;  // a drain runs up to this many calls before it splits

  void shutdown() override {}  // a node left here owns only itself; the context is going

  // @return the pushed calls, oldest first.
  Node* take() noexcept {
    Node* reversed = head_.exchange(nullptr, std::memory_order_acquire);
    Node* list = nullptr;
    while (reversed != nullptr) {
      Node* next = reversed->next_;
      reversed->next_ = list;
      list = reversed;
      reversed = next;
    }
    return list;
  }

  // Runs `list`; while it is longer than kBatch, posts its second half first (another thread of
  // the context takes it and splits it again).
  void run_batch(Node* list, const ::asio::any_io_executor& ex) noexcept {
    std::size_t n = 0;
    for (Node* p = list; p != nullptr; p = p->next_) ++n;
    while (n > kBatch) {
      const std::size_t keep = n / 2;
      Node* cut = list;
      for (std::size_t i = 1; i < keep; ++i) cut = cut->next_;
      Node* rest = cut->next_;
      cut->next_ = nullptr;
      ::asio::post(ex, [this, rest, ex] { run_batch(rest, ex); });
      n = keep;
    }
    while (list != nullptr) {
      Node* next = list->next_;  // read first: run() may end the node's life
      list->run();
      list = next;
    }
  }

  std::atomic<Node*> head_{nullptr};
};

// One asynchronous get_or_compute, all but its loader's and handler's types: the steps are
// compiled once per T (GetOp below adds the loader and the handler). Shared by the steps that run
// it (held by each posted step and, while it waits, by itself: the flight it is attached to holds
// only a raw pointer). Its state is guarded by mu_; the handler is invoked outside it.
//
// Lock order: mu_, then a flight's continuation lock (attach, detach) or the registry's; the
// flight calls published() with no lock held and limit_set() under its continuation lock, so both
// only post work here.
template <class T>
class CallCore : public stampede::detail::Flight<T>::Continuation,
                 public stampede::detail::AsyncCall,
                 public ReadyCalls::Node,
                 public std::enable_shared_from_this<CallCore<T>> {
  using Flight = stampede::detail::Flight<T>;
  using Access = stampede::detail::AsyncAccess;
  using steady = std::chrono::steady_clock;
  using Lock = std::unique_lock<std::mutex>;

 public:
  CallCore(const CallCore&) = delete;
  CallCore& operator=(const CallCore&) = delete;

 protected:
  enum class Completion { dispatch, post };

  // @param io where the call's own steps and timer run (the handler's executor if it is an I/O
  //        executor, else the system executor).
  CallCore(Cache<T>& cache, std::string key, CallOptions call, ::asio::any_io_executor io)
      : cache_(cache),
        calls_(Access::calls(cache)),
        key_(std::move(key)),
        call_(std::move(call)),
        io_(std::move(io)),
        work_(::asio::prefer(io_, ::asio::execution::outstanding_work.tracked)),
        ready_(::asio::use_service<ReadyCalls>(::asio::query(io_, ::asio::execution::context))),
        timer_(io_) {}
  ~CallCore() override { calls_->remove(*this); }

  // The loader, for a load on this call's behalf.
  virtual stampede::detail::LoaderRef<T> loader() noexcept = 0;
  // A copy of the loader, for a refresh that outlives the call. @throws what the copy throws.
  virtual stampede::detail::OwnedLoader<T> loader_copy() = 0;
  // Clears the cancellation slot, releases `lock` and runs the handler (posted or dispatched to
  // its executor) with the result. Called once.
  virtual void deliver(std::unique_lock<std::mutex>& lock, std::exception_ptr error, T value,
                       Completion how) noexcept = 0;

  // On the initiating thread, once the call is owned by a shared_ptr (after the typed part wired
  // its cancellation slot).
  void start() {
    if (call_.stop.stop_possible()) {
      on_stop_ = std::make_unique<std::stop_callback<StopRequested>>(call_.stop, StopRequested{this});
    }
    Lock lock(mu_);
    if (done_) return;  // cancelled already
    try {
      Access::check<T>(call_, key_);
    } catch (...) {
      return finish(lock, std::current_exception(), T{}, Completion::post);
    }
    if (!calls_->add(*this)) return finish(lock, cache_destroyed(), T{}, Completion::post);
    begin(lock);  // the caller's Cache lives during the initiation
  }

  void post_cancel() noexcept {
    if (auto self = this->weak_from_this().lock()) {
      ::asio::post(io_, [self = std::move(self)] { self->cancel(); });
    }
  }

 public:
  std::shared_ptr<stampede::detail::AsyncCall> pin() noexcept override {
    return this->weak_from_this().lock();
  }
  void abort() noexcept override {
    Lock lock(mu_);
    finish(lock, cache_destroyed(), T{}, Completion::post);
  }

  // The publisher's thread, inside the Cache (which therefore lives): count, then resume here.
  void published() noexcept override {
    Flight& f = *waiting_on_;  // set before attach(); not changed while attached
    if (f.outcome() == Flight::Outcome::value)
      Access::count_shared(cache_, &f == flight_.get() && f.is_old());
    ready_self_ = this->shared_from_this();  // until run()
    ready_.push(*this, io_);
  }
  // ReadyCalls: a thread of the call's context.
  void run() noexcept override {
    std::shared_ptr<CallCore> self = std::move(ready_self_);
    on_published();
  }
  void limit_set() noexcept override {
    ::asio::post(io_, [self = this->shared_from_this()] {
      Lock lock(self->mu_);
      if (!self->done_ && self->self_) self->arm_timer();
    });
  }

 private:
  // Runs inside the caller's request_stop(); finish() destroys it, so it only posts.
  struct StopRequested {
    CallCore* op;
    void operator()() const noexcept { op->post_cancel(); }
  };

  // The lookup and the join. A store that reads from memory is read here, and a miss joins the
  // key's flight. A store that reads over the network (Redis) is read once per flight: the caller
  // joins first, and the flight's leader reads on a blocking thread; its waiters make no round trip.
  void begin(Lock& lock) {
    const bool local = Access::reads_locally(cache_);
    try {
      if (local) {
        if (std::optional<T> v = Access::lookup<T>(cache_, key_, [this] { return loader_copy(); })) {
          return finish(lock, nullptr, std::move(*v), Completion::post);
        }
      }
      auto joined = Access::join(cache_, key_);
      flight_ = std::move(joined.flight);
      if (local || !joined.leader) count_miss_once();
      if (!joined.leader) {
        interest_ = true;  // join() counted this caller
        return wait_on(lock, *flight_, Access::wait_deadline(cache_, call_), Completion::post);
      }
    } catch (...) {
      return finish(lock, std::current_exception(), T{}, Completion::post);
    }
    stop_.emplace();  // a leader's: requested when this call ends
    auto step = [self = this->shared_from_this(), read = local] {
      if (read || self->read_first()) self->lead();
    };
    if (!Access::run_blocking(cache_, std::move(step))) {
      Access::abandon(cache_, key_, *flight_);
      finish(lock, shutting_down(), T{}, Completion::post);
    }
  }

  void count_miss_once() noexcept {
    if (!miss_counted_.exchange(true, std::memory_order_relaxed)) Access::count_miss(cache_);
  }

  // A blocking thread: the leader's read, for a store that reads over the network.
  // @return true on a miss (lead the load); false if the flight got its result here.
  bool read_first() {
    try {
      if (std::optional<T> v = Access::lookup<T>(cache_, key_, [this] { return loader_copy(); })) {
        Access::publish(cache_, key_, *flight_, *v);
        complete(nullptr, std::move(*v));
        return false;
      }
      count_miss_once();
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
    call.stop = stop_->get_token();  // emplaced before this step was queued
    try {
      T value = Access::lead(cache_, key_, loader(), flight_, call);
      complete(nullptr, std::move(value));
    } catch (...) {
      complete(std::current_exception(), T{});
    }
  }

  // Attaches to `flight` (the key's flight or its fallback) until `deadline`. `how`: how to
  // complete if the flight has published already (post, on the initiating thread).
  void wait_on(Lock& lock, Flight& flight, steady::time_point deadline, Completion how) {
    waiting_on_ = &flight;
    deadline_ = deadline;
    self_ = this->shared_from_this();  // the flight holds only a raw pointer
    if (!flight.attach(*this)) {
      self_.reset();
      return settle(lock, how);
    }
    arm_timer();
  }

  // The next time to look: the wait's deadline, or the flight's load limit if sooner.
  void arm_timer() {
    steady::time_point until = deadline_;
    steady::time_point limit{};
    if (waiting_on_ == flight_.get() && flight_->pending_limit(limit) && limit < until) until = limit;
    if (until == steady::time_point::max()) {
      if (timer_armed_) timer_.cancel();
      timer_armed_ = false;
      return;
    }
    timer_armed_ = true;
    timer_.expires_at(until);
    timer_.async_wait([self = this->shared_from_this()](const std::error_code& ec) {
      if (!ec) self->on_timer();
    });
  }

  void on_timer() {
    Lock lock(mu_);
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
    if (Access::computes_on_wait_timeout(cache_)) return compute_fallback(lock);
    serve_or_throw(lock);
  }

  // OnWaitTimeout::compute. The callers of one flight that gave up share one fallback.
  void compute_fallback(Lock& lock) {
    auto [fallback, leader] = flight_->join_fallback();
    if (!leader) return wait_on(lock, fallback, steady::time_point::max(), Completion::dispatch);
    Flight* f = &fallback;
    if (!Access::run_blocking(cache_, [self = this->shared_from_this(), f] {
          try {
            T value = Access::lead_fallback(self->cache_, self->key_, self->loader(), *self->flight_, *f);
            self->complete(nullptr, std::move(value));
          } catch (...) {
            self->complete(std::current_exception(), T{});
          }
        })) {
      fallback.set_error(shutting_down());
      finish(lock, shutting_down(), T{}, Completion::post);
    }
  }

  // OnWaitTimeout::serve_stale and throw_error (a store over the network: on a blocking thread).
  void serve_or_throw(Lock& lock) {
    auto value = [this] { return Access::serve_or_throw(cache_, key_, loader(), *flight_, call_); };
    if (Access::reads_locally(cache_)) {
      try {
        return finish(lock, nullptr, value(), Completion::dispatch);
      } catch (...) {
        return finish(lock, std::current_exception(), T{}, Completion::dispatch);
      }
    }
    if (!Access::run_blocking(cache_, [self = this->shared_from_this(), value] {
          try {
            self->complete(nullptr, value());
          } catch (...) {
            self->complete(std::current_exception(), T{});
          }
        })) {
      finish(lock, shutting_down(), T{}, Completion::post);
    }
  }

  // The flight this call waits on has published.
  void on_published() {
    Lock lock(mu_);
    self_.reset();
    if (done_) return;
    settle(lock, Completion::dispatch);
  }

  // Completes the call from what waiting_on_ published.
  void settle(Lock& lock, Completion how) {
    Flight& f = *waiting_on_;
    switch (f.outcome()) {
      case Flight::Outcome::value: {
        std::optional<T> value;
        try {
          value.emplace(f.value());
        } catch (...) {
          return finish(lock, std::current_exception(), T{}, how);
        }
        return finish(lock, nullptr, std::move(*value), how);
      }
      case Flight::Outcome::error:
        return finish(lock, f.error(), T{}, how);
      case Flight::Outcome::abandoned: {  // the leader gave up before loading: join again
        drop_interest();
        waiting_on_ = nullptr;
        flight_.reset();
        const auto use = calls_->use();
        if (!use) return finish(lock, cache_destroyed(), T{}, how);
        return begin(lock);
      }
      case Flight::Outcome::pending:
        break;
    }
  }

  // A cancellation slot or a stop request, posted.
  void cancel() {
    Lock lock(mu_);
    if (done_) return;
    if (self_ && waiting_on_->detach(*this)) self_.reset();
    const auto use = calls_->use();
    finish(lock, use ? Access::cancelled(cache_, key_) : cache_destroyed(), T{}, Completion::post);
  }

  // Any thread: the result of a step that ran elsewhere (a blocking thread).
  void complete(std::exception_ptr error, T value) {
    Lock lock(mu_);
    finish(lock, std::move(error), std::move(value), Completion::dispatch);
  }

  // Completes the call once (later results, e.g. a leader's load after a cancellation, are
  // dropped) and releases `lock` before the handler runs.
  void finish(Lock& lock, std::exception_ptr error, T value, Completion how) {
    if (done_) return;
    done_ = true;
    calls_->remove(*this);
    if (timer_armed_) timer_.cancel();
    drop_interest();
    if (stop_) stop_->request_stop();  // a leader's load loses this caller's interest
    std::unique_ptr<std::stop_callback<StopRequested>> on_stop = std::move(on_stop_);
    deliver(lock, std::move(error), std::move(value), how);  // releases `lock`
    on_stop.reset();  // outside mu_: its callback may be waiting for mu_ on another thread
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

  Cache<T>& cache_;  // used only while a Use of calls_ says it lives (or inside the Cache's own calls)
  const std::shared_ptr<stampede::detail::AsyncCalls> calls_;
  const std::string key_;
  const CallOptions call_;
  const ::asio::any_io_executor io_;      // the call's own steps and timer
  const ::asio::any_io_executor work_;    // io_, counted as work: keeps its loop running meanwhile
  ReadyCalls& ready_;                     // of io_'s context
  std::shared_ptr<CallCore> ready_self_;  // set by published(), taken by run()
  std::atomic<bool> miss_counted_{false};

  std::mutex mu_;
  ::asio::steady_timer timer_;  // used under mu_
  bool timer_armed_ = false;
  std::optional<std::stop_source> stop_;                        // a leader's: requested when this call ends
  std::unique_ptr<std::stop_callback<StopRequested>> on_stop_;  // the caller's CallOptions::stop
  bool done_ = false;
  bool interest_ = false;           // this caller's interest in flight_ (a waiter's) is held
  std::shared_ptr<Flight> flight_;  // the key's flight this call joined
  Flight* waiting_on_ = nullptr;    // flight_ or its fallback, while waiting
  std::shared_ptr<CallCore> self_;  // set while attached to waiting_on_
  steady::time_point deadline_{};
};

// The typed part of one call: its loader and its handler.
template <class T, class Loader, class Handler>
class GetOp final : public CallCore<T> {
  using Core = CallCore<T>;
  using HandlerExecutor = ::asio::associated_executor_t<Handler, ::asio::system_executor>;

 public:
  GetOp(Cache<T>& cache, std::string key, Loader loader, CallOptions call, Handler handler)
      : Core(cache, std::move(key), std::move(call), io_executor(handler)),
        loader_(std::move(loader)),
        handler_(std::move(handler)),
        executor_(::asio::get_associated_executor(*handler_, ::asio::system_executor())) {}

  // On the initiating thread, once the op is owned by a shared_ptr.
  void start() {
    auto slot = ::asio::get_associated_cancellation_slot(*handler_);
    if (slot.is_connected()) {
      // Posted: finishing clears the slot, which must not happen inside the slot's own handler.
      slot.assign([self = this->shared_from_this()](::asio::cancellation_type type) {
        if (type != ::asio::cancellation_type::none) static_cast<GetOp&>(*self).post_cancel();
      });
    }
    Core::start();
  }

 private:
  // Where the call's own steps and timer run: the handler's executor if it is an I/O executor (an
  // io_context's, a strand), else the system executor (e.g. use_future's).
  static ::asio::any_io_executor io_executor(const Handler& handler) {
    const HandlerExecutor ex = ::asio::get_associated_executor(handler, ::asio::system_executor());
    if constexpr (std::is_convertible_v<HandlerExecutor, ::asio::any_io_executor>) {
      return ex;
    } else {
      return ::asio::system_executor();
    }
  }

  stampede::detail::LoaderRef<T> loader() noexcept override {
    return stampede::detail::LoaderRef<T>(loader_);
  }
  stampede::detail::OwnedLoader<T> loader_copy() override {
    return stampede::detail::OwnedLoader<T>::make(loader_);
  }

  void deliver(std::unique_lock<std::mutex>& lock, std::exception_ptr error, T value,
               typename Core::Completion how) noexcept override {
    ::asio::get_associated_cancellation_slot(*handler_).clear();
    auto invoke = [h = std::move(*handler_), error = std::move(error), value = std::move(value)]() mutable {
      h(std::move(error), std::move(value));
    };
    handler_.reset();
    lock.unlock();
    if (how == Core::Completion::post) {
      ::asio::post(executor_, std::move(invoke));
    } else {
      ::asio::dispatch(executor_, std::move(invoke));
    }
  }

  Loader loader_;
  std::optional<Handler> handler_;  // moved out by deliver()
  const HandlerExecutor executor_;
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
