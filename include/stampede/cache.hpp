// stampede/cache.hpp: Cache<T>, the one call that protects a loader from a stampede.
//
// When a hot key expires and many callers miss at once, exactly one of them runs the loader and
// the others get its value. In-process callers share one flight; across processes (Redis backend)
// the flight leader takes the key's token lock, and the other processes wait for the value.
//
//   stampede::Cache<Item> cache({.ttl = 30s, .lock_ttl = 5s, .wait_timeout = 1s});
//   Item item = cache.get_or_compute("item:1", [id = 1] { return db_load_item(id); });
//
// Thread-safe: every method may be called concurrently from any thread.
// Lifetime: the destructor stops background refreshes and loads: queued refreshes are dropped,
// running ones see their LoadContext's stop token requested and are waited for, so no refresh
// or background load ever touches a destroyed Cache. No call may be in progress on another
// thread when the Cache is destroyed; asynchronous calls (stampede/asio.hpp) still pending are
// completed with an error first. The destructor may run on a refresher thread (a refresh's
// loader that holds the last reference to the Cache's owner): it then waits for the other running
// refreshes and lets that thread finish by itself.
// fork(): a fork()ed child may go on using a Cache it inherited. Loads that were in flight in the
// parent are not the child's (their leaders stayed in the parent): the child's callers start new
// flights. The parent's queued and running refreshes are dropped; the child's refreshes get
// threads of their own on first use, and wait_idle() waits only for them. Entries and locks are
// what the backend gives the child.
//
// FAQ
// - Does a caller ever wait forever? No. A caller waits at most wait_timeout for another caller's
//   load (then OnWaitTimeout decides); its own load takes as long as its loader (a load handed to a
//   background thread never queues behind other keys' loads). wait_timeout =
//   milliseconds::max() waits as long as the load takes.
// - What do waiters get if the loader throws? The same exception (the one exception_ptr is
//   rethrown in each). Nothing is stored, the lock is released at once, the next call loads again.
// - Can a slow loader overwrite newer data? No. Its write carries the fence of its lock; if the
//   lock expired and someone stored since (or invalidate()/put() ran), the write is refused and
//   counted in stats().stale_writes_rejected. The caller still gets the value it loaded.
// - After invalidate(k) or put(k, v) returned, can a call get a value loaded before? Not in the
//   process that called it: a load in flight keeps its callers, but a call that starts later never
//   joins it: it starts its own load (which waits for the old one's lock, as another process
//   would). Another process's load of k that started before is never stored (its fence is
//   refused), but a caller of that process that joins it still gets its value: the other process
//   learns of the invalidate only through the store.
// - The loader is slower than wait_timeout, policy compute: how many loads? At most two per flight
//   in a process: the leader's, and one fallback load that all callers who gave up share (also
//   when the leader itself gave up waiting for another process's lock). The fallback's value is
//   returned but not stored; if the leader's value comes first, they get that one.
// - The value was loaded but cannot be stored (Store::put throws codec_error, e.g. the codec
//   cannot encode it, or backend_error)? Every caller, the leader included, gets the value, in
//   both failure modes: the load succeeded. Nothing is stored; stats().store_failures counts it
//   and EventType::store_failed reports it (a backend_error also counts in backend_errors).
// - The backend refuses wake-up subscriptions (a Redis ACL user without channel rights)? Waiting
//   callers poll every poll_interval instead; counted in backend_errors, never a load.
// - In SWR mode (and with early_refresh_beta > 0) the loader can run *after* get_or_compute
//   returned, on a refresher thread. Capture by value, or only what outlives the Cache. The same
//   holds with loader_soft_timeout / loader_hard_timeout: the load runs on a background load thread
//   (a copy of the loader) and may finish after its callers got the old value or timeout_error.
// - How do I give up waiting? Pass CallOptions{.stop = token}: a stop request ends this caller's
//   wait with cancelled_error; the load goes on for the others and is stored. A loader that takes a
//   LoadContext& sees ctx.stop_token() requested once every caller waiting for it gave up.
// - The loader fails but an older value exists? With fail_safe_max_age > 0 every caller of that load
//   gets the last good value (fail_safe_served, EventType::fail_safe) and the entry is re-armed in
//   the store for fail_safe_throttle under the failed load's fence; then one caller tries again.
//   Only if the store still holds that value: after an invalidate() or put() (in any process), or
//   a load that found the row gone (an empty optional with negative_ttl 0), the loader's error is
//   what the callers get.
// - A loader timeout and a caller that stops waiting? The timeout belongs to the load's flight: the
//   other callers of that load still get the old value (or timeout_error) when it passes.
#pragma once

#include <concepts>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <type_traits>

#include "stampede/backend.hpp"
#include "stampede/call.hpp"
#include "stampede/detail/async_calls.hpp"
#include "stampede/detail/flight.hpp"
#include "stampede/detail/function_ref.hpp"
#include "stampede/detail/loader_ref.hpp"
#include "stampede/detail/refresher.hpp"
#include "stampede/detail/striped_counters.hpp"
#include "stampede/lease.hpp"
#include "stampede/memory/backend.hpp"  // the default backend
#include "stampede/options.hpp"
#include "stampede/stats.hpp"
#include "stampede/store.hpp"
#include "stampede/token_lock.hpp"

namespace stampede {

namespace detail {
struct AsyncAccess;  // the asynchronous calls of stampede/asio.hpp: built from Cache's own steps
}  // namespace detail

/// A loader for Cache<T>: callable with a LoadContext& (preferred when both work) or with no
/// arguments, returning something convertible to T.
template <class F, class T>
concept LoaderFor =
    (std::invocable<F&, LoadContext&> && std::convertible_to<std::invoke_result_t<F&, LoadContext&>, T>) ||
    (std::invocable<F&> && std::convertible_to<std::invoke_result_t<F&>, T>);

template <class T>
class Cache {
 public:
  /// An in-process cache (MemoryStore + MemoryTokenLock).
  /// @throws std::invalid_argument naming the first bad option.
  explicit Cache(CacheOptions options = {});
  /// A cache over `backend` (e.g. stampede::redis::backend<T>(...)).
  /// @throws std::invalid_argument for bad options or a null store/lock.
  Cache(CacheOptions options, Backend<T> backend);
  ~Cache();
  Cache(const Cache&) = delete;
  Cache& operator=(const Cache&) = delete;

  /// Returns the cached value of `key`, or loads it once for all concurrent callers.
  ///
  /// Fresh hit: returned at once. SWR stale hit: returned at once, one background refresh
  /// scheduled. Miss: one flight per key in this process; its leader takes the token lock, looks
  /// again, runs `loader`, stores the value with the lock's fence and wakes the waiters. A caller
  /// that cannot get the value within wait_timeout follows on_wait_timeout.
  ///
  /// @param key non-empty; any bytes.
  /// @param loader called with a LoadContext& (if it takes one) or with no arguments; its result
  ///        is converted to T.
  /// @return the value.
  /// @throws std::invalid_argument for an empty key; whatever `loader` throws (also in every
  ///         caller that waited for that load); whatever T's copy constructor throws when the
  ///         loaded value is handed to a waiter; timeout_error (OnWaitTimeout::throw_error, or
  ///         serve_stale with nothing to serve); backend_error (BackendFailure::fail_closed, when
  ///         the backend cannot be read or locked; a failed store of a loaded value is not thrown).
  template <LoaderFor<T> Loader>
  T get_or_compute(std::string_view key, Loader&& loader) {
    return get_or_compute(key, std::forward<Loader>(loader), CallOptions{});
  }

  /// get_or_compute() with per-call options: a wait timeout of its own, and a stop token that
  /// ends this caller's wait for another caller's load at once (the others keep waiting, the load
  /// goes on and is stored; when every caller waiting for it gave up, LoadContext::stop_token()
  /// is requested).
  /// @param key non-empty; any bytes.
  /// @param loader as above.
  /// @param call this call's options.
  /// @return the value.
  /// @throws as above; also cancelled_error when call.stop was requested while this call waited,
  ///         and std::invalid_argument for a negative call.wait_timeout.
  template <LoaderFor<T> Loader>
  T get_or_compute(std::string_view key, Loader&& loader, const CallOptions& call);

  /// get_or_compute() that hands the value to `reader` instead of returning a copy of it: the way
  /// to read a large value often. On a hit in a store that can (the embedded backend), `reader`
  /// sees the stored value in place: no copy of T, whatever its size, and no write to memory shared
  /// with other readers. Elsewhere (a load, a store that decodes its bytes, e.g. Redis) it sees the
  /// value this call got.
  ///
  ///   std::size_t n = cache.visit("doc:1", load_doc, [](const Doc& d) { return d.items.size(); });
  ///
  /// While `reader` runs on a hit, writes to that part of the store wait for it: keep it short,
  /// do not call this Cache from it, and keep no reference to the value after it returned.
  /// @param key, loader, call as get_or_compute().
  /// @param reader called once, with `const T&`.
  /// @return what `reader` returns.
  /// @throws as get_or_compute(); whatever `reader` throws (a hit is still counted as one).
  template <class Reader, LoaderFor<T> Loader>
    requires std::invocable<Reader&, const T&>
  std::invoke_result_t<Reader&, const T&> visit(std::string_view key, Loader&& loader, Reader&& reader,
                                                const CallOptions& call = {});

  /// Reads without loading.
  /// @return a fresh value, or (SWR) a stale one still in its window; std::nullopt on a miss.
  ///         Never schedules a refresh (there is no loader to run).
  /// @throws std::invalid_argument for an empty key; backend_error (fail_closed).
  std::optional<T> get(std::string_view key);

  /// Stores `value` now with a new fence (so loads in flight cannot overwrite it) and wakes waiters.
  /// A call that starts after put() returned never gets a value loaded before it. A write the store
  /// refuses for its fence (a later fence was seen meanwhile, or the store lost its fence record) is
  /// tried once more with a new fence.
  /// @param key non-empty; any bytes.
  /// @param value the value to store.
  /// @throws std::invalid_argument for an empty key; backend_error (in both failure modes:
  ///         a write that did not happen must not pass silently, also when the store refused both
  ///         fences); codec_error if it cannot be encoded.
  ///         A wake-up that fails after the write (e.g. no pub/sub rights) is only counted in
  ///         backend_errors and reported: waiters then find the value by polling.
  void put(std::string_view key, T value);

  /// Removes `key`. A load that started before this call can never store its value after it, and
  /// a call in this process that starts after it returned never gets that load's value (see the
  /// FAQ for other processes).
  /// @param key non-empty; any bytes.
  /// @throws std::invalid_argument for an empty key; backend_error (in both failure modes).
  void invalidate(std::string_view key);

  /// @return a snapshot of the counters.
  Stats stats() const;

  /// Blocks until no background refresh is queued or running (tests, orderly shutdown).
  void wait_idle();

  const CacheOptions& options() const noexcept { return options_; }
  const std::string& backend_name() const noexcept { return backend_.name; }

 private:
  friend struct detail::AsyncAccess;
  // One per line of STAMPEDE_CACHE_COUNTERS (stats.hpp).
  enum class Counter : std::size_t {
#define STAMPEDE_CACHE_COUNTER_ENUMERATOR(name, kind, help) name,
    STAMPEDE_CACHE_COUNTERS(STAMPEDE_CACHE_COUNTER_ENUMERATOR)
#undef STAMPEDE_CACHE_COUNTER_ENUMERATOR
    // (not a counter: their number)
    kCount
  };
  using time_point = std::chrono::system_clock::time_point;

  /// What a hit found: a value past its soft expiry (SWR's window), or one due for a refresh.
  struct Hit {
    bool stale = false;
    bool refresh = false;
    std::uint64_t fence = 0;
  };
  static void check_call(std::string_view key, const CallOptions& call);
  Hit hit_of(const Entry<T>& e, time_point now) const;
  template <class Loader>
  void after_hit(std::string_view key, const Hit& hit, Loader&& loader);
  // The miss path of get_or_compute: join the key's flight, lead it or wait for it.
  T load_missing(std::string_view key, detail::LoaderRef<T> loader, const CallOptions& call);
  // Calls `fn` with the key's entry if it is servable, in place where the store can (read()'s
  // error handling: a decode error or a fail_open backend error is a miss).
  void visit_servable(std::string_view key, time_point now, detail::FunctionRef<void(const Entry<T>&)> fn);
  std::optional<T> await_flight(std::string_view key, detail::LoaderRef<T> loader, detail::Flight<T>& flight,
                                const CallOptions& call);
  T lead_flight(std::string_view key, detail::LoaderRef<T> loader, std::shared_ptr<detail::Flight<T>> flight,
                const CallOptions& call);
  /// What lead() ends with: the value, nothing (stopped before loading), or a load handed to a
  /// background thread (its flight carries the loader timeout and the old value, if any).
  struct Led {
    std::optional<T> value;
    bool in_background = false;
    /// The leader has its value: from its own load, the store or a fallback.
    static Led done(T v) { return Led{std::move(v), false}; }
  };
  Led lead(std::string_view key, detail::LoaderRef<T> loader,
           const std::shared_ptr<detail::Flight<T>>& flight, const CallOptions& call);
  bool hand_off(std::string_view key, detail::LoaderRef<T> loader,
                const std::shared_ptr<detail::Flight<T>>& flight, LockLease& lease, std::uint64_t fence,
                const LoadContext& context);
  T await_background(std::string_view key, detail::Flight<T>& flight, const CallOptions& call);
  // Applies the flight's loader timeout (its load limit passed): the old value to every caller,
  // or timeout_error. Any caller of the flight may call it; one applies it.
  void expire_load(std::string_view key, detail::Flight<T>& flight);
  /// When a load wakes its flight's waiters: before its store write (the caller's thread ran the
  /// loader and returns only after the write) or after it (a background load: its callers are all
  /// waiters, and each must find the value in the store once it returns).
  enum class Wake { before_store, after_store };
  T load_and_store(std::string_view key, detail::LoaderRef<T> loader, LoadContext& context,
                   std::uint64_t fence, detail::Flight<T>& flight, Wake wake);
  std::optional<T> fail_safe(std::string_view key, std::uint64_t fence, std::string_view error);
  bool servable(const Entry<T>& e, time_point now) const noexcept {
    return now < (options_.mode == Mode::blocking ? e.soft_expiry : e.soft_expiry + options_.swr_window);
  }
  // Where a read goes: the store's get(), or get_authoritative() (for lock holders).
  enum class Read { any_copy, authoritative };
  std::optional<Entry<T>> read_servable(std::string_view key, time_point now, Read from = Read::any_copy) {
    std::optional<Entry<T>> e = read(key, now, from);
    if (e && !servable(*e, now)) e.reset();  // only a fail-safe "last good" value
    return e;  // one return of one variable: constructed in the caller's (no move)
  }
  bool loader_timeouts() const noexcept {
    return options_.loader_soft_timeout.count() > 0 || options_.loader_hard_timeout.count() > 0;
  }
  T on_wait_timeout(std::string_view key, detail::LoaderRef<T> loader, detail::Flight<T>& flight,
                    const CallOptions& call);
  T compute_fallback(std::string_view key, detail::LoaderRef<T> loader, detail::Flight<T>& flight,
                     const CallOptions& call);
  // The fallback's leader: loads (unless the flight published meanwhile) and publishes to it.
  T lead_fallback(std::string_view key, detail::LoaderRef<T> loader, detail::Flight<T>& flight,
                  detail::Flight<T>& fallback);
  // How often put() draws a fence and writes before it reports that the store refused it.
  static constexpr int kPutAttempts = 2;
  std::chrono::milliseconds wait_timeout(const CallOptions& call) const noexcept {
    return call.wait_timeout.count() > 0 ? call.wait_timeout : options_.wait_timeout;
  }
  [[noreturn]] void throw_cancelled(std::string_view key);
  std::unique_ptr<Subscription> subscribe(std::string_view key, bool& can_subscribe);
  void wait_for_signal(std::string_view key, Subscription* sub, std::chrono::steady_clock::time_point until,
                       bool& can_subscribe);
  template <class Loader>
  void schedule_refresh(std::string_view key, std::uint64_t observed_fence, Loader&& loader);
  // schedule_refresh() with the refresh's own copy of the loader made by `copy` (which may throw).
  void schedule_refresh_of(std::string_view key, std::uint64_t observed_fence,
                           detail::FunctionRef<detail::OwnedLoader<T>()> copy);
  void submit_refresh(std::string_view key, std::uint64_t observed_fence, detail::OwnedLoader<T> loader);
  void refresh(const std::string& key, std::uint64_t observed_fence, detail::LoaderRef<T> loader);
  T run_loader(std::string_view key, detail::LoaderRef<T> loader, LoadContext& context,
               std::chrono::nanoseconds& took);

  std::optional<Entry<T>> read(std::string_view key, time_point now, Read from = Read::any_copy);
  PutResult write(std::string_view key, const T& value, std::uint64_t fence,
                  std::chrono::nanoseconds load_time,
                  std::optional<std::chrono::milliseconds> ttl = std::nullopt);
  void store_loaded(std::string_view key, const T& value, std::uint64_t fence,
                    std::chrono::nanoseconds load_time, std::optional<std::chrono::milliseconds> ttl);
  std::optional<std::chrono::milliseconds> lifetime(const T& value,
                                                    std::optional<std::chrono::milliseconds> ttl) const;
  bool xfetch_due(const Entry<T>& e, time_point now) const;
  void on_backend_error(std::string_view key, const std::exception& e);
  void emit(EventType type, std::string_view key, std::string_view detail = {},
            std::chrono::nanoseconds duration = {}) const noexcept;
  void count(Counter c, std::uint64_t n = 1) const noexcept { counters_.add(static_cast<std::size_t>(c), n); }
  static void check_key(std::string_view key);

  CacheOptions options_;
  Backend<T> backend_;
  std::shared_ptr<const Clock> clock_;
  mutable detail::StripedCounters<static_cast<std::size_t>(Counter::kCount)> counters_;
  detail::FlightGroup<T> flights_;
  // Requested by the destructor: the stop token of every running refresh and background load.
  std::stop_source shutdown_;
  // Loads handed off when a loader timeout is set, each to a thread that is idle (never queued);
  // stopped before the members they use go.
  detail::Refresher loads_;
  // The steps of asynchronous calls that may block (a leader's lock, load and store; a read that
  // waits for I/O), queued; threads start on the first such call. Stopped before the members
  // they use go; a step it drops completes its call with an error.
  detail::Refresher blocking_;
  // The pending asynchronous calls: the destructor completes each of them with an error first.
  std::shared_ptr<detail::AsyncCalls> async_calls_ = std::make_shared<detail::AsyncCalls>();
  // Declared last so it is destroyed first: refreshes stop before the members they use go.
  detail::Refresher refresher_;
};

}  // namespace stampede

#include "stampede/detail/cache-inl.hpp"
