// stampede/call.hpp: per-call control of Cache<T>::get_or_compute: CallOptions and LoadContext.
//
// CallOptions overrides the wait timeout of one call and lets the caller give up waiting; a loader
// that takes a LoadContext& can set its entry's TTL and learn that nobody wants its value any more.
//
//   std::stop_source cancel;
//   Item item = cache.get_or_compute("item:1", [](stampede::LoadContext& ctx) {
//     Response r = fetch(ctx.stop_token());  ctx.set_ttl(r.max_age);  return r.item; },
//     {.wait_timeout = 200ms, .stop = cancel.get_token()});
#pragma once

#include <chrono>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <utility>

namespace stampede {

/// The longest lifetime the Cache accepts: a TTL (CacheOptions::ttl, soft_ttl, swr_window,
/// negative_ttl, fail_safe_max_age, fail_safe_throttle, LoadContext::set_ttl), lock_ttl and
/// poll_interval: 10 years. Expiries are system_clock time points (nanoseconds, which end in
/// 2262), and an entry's lives add up, so each must leave room. Waits and loader timeouts
/// (wait_timeout, loader_soft_timeout, loader_hard_timeout) take any value:
/// std::chrono::milliseconds::max() waits as long as it takes.
inline constexpr std::chrono::milliseconds kMaxLifetime{std::chrono::hours{24 * 3650}};

/// Options of one get_or_compute call. A plain value; thread-compatible.
struct CallOptions {
  /// How long this call waits for another caller's load before CacheOptions::on_wait_timeout;
  /// 0 = CacheOptions::wait_timeout. Must be >= 0; milliseconds::max() waits as long as it takes.
  std::chrono::milliseconds wait_timeout{0};
  /// A request ends this call's wait for another caller's load at once with cancelled_error (a
  /// wait for another process's lock: within one poll_interval). A call that is running the
  /// loader on its own thread returns when the loader does. Never requested by default.
  std::stop_token stop;
};

/// What a loader that takes a `LoadContext&` can see and set about its load.
///
/// Thread-compatible: the Cache makes one per load and hands it to the loader on the thread that
/// runs it. Lifetime: valid during the loader call only.
class LoadContext {
 public:
  /// @param stop requested when every caller waiting for this load has given up.
  explicit LoadContext(std::stop_token stop = {}) : stop_(std::move(stop)) {}

  /// Sets this entry's lifetime (blocking mode: its TTL; SWR: its soft TTL, the stale window
  /// follows) instead of CacheOptions::ttl / soft_ttl / negative_ttl; ttl_jitter does not apply.
  /// @param ttl > 0 and <= kMaxLifetime, e.g. the max-age an origin returned.
  /// @throws std::invalid_argument if ttl <= 0 or ttl > kMaxLifetime.
  void set_ttl(std::chrono::milliseconds ttl) {
    if (ttl.count() <= 0) throw std::invalid_argument("stampede::LoadContext::set_ttl: ttl must be > 0");
    if (ttl > kMaxLifetime) {
      throw std::invalid_argument("stampede::LoadContext::set_ttl: ttl must be <= 3650 days (kMaxLifetime)");
    }
    ttl_ = ttl;
  }
  /// @return the TTL the loader set, or std::nullopt for the Cache's options.
  [[nodiscard]] std::optional<std::chrono::milliseconds> ttl() const noexcept { return ttl_; }
  /// @return a token requested once every caller waiting for this load has given up (their stop
  ///         tokens were requested); a loader may then abandon its work (e.g. by throwing). Never
  ///         requested for a background refresh.
  [[nodiscard]] const std::stop_token& stop_token() const noexcept { return stop_; }

 private:
  std::stop_token stop_;
  std::optional<std::chrono::milliseconds> ttl_;
};

}  // namespace stampede
