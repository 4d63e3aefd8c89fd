// demos/backend.hpp: which backend a demo runs on.
//
// `--redis URL`, or else the REDIS_URL environment variable, selects Redis; with neither (or an empty
// value) the demo runs on the embedded in-process backend:
//
//   demo::BackendChoice choice;
//   choice.add_flags(app);                                     // --redis URL, env REDIS_URL, --near-cache
//   stampede::Backend<Item> b = choice.backend<Item>();        // b.name is "memory", "redis" or "redis+near"
//
// The Redis part is compiled only when the build has the stampede::redis target
// (demos/CMakeLists.txt then defines STAMPEDE_DEMO_HAVE_REDIS); without it, selecting Redis fails
// with a clear message. Thread-compatible.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <stampede/cache.hpp>
#include <stampede/memory/backend.hpp>
#include <stampede/token_lock.hpp>
#include <string>

#include "cli.hpp"

#if defined(STAMPEDE_DEMO_HAVE_REDIS)
#include <stampede/redis/redis.hpp>
#endif

namespace demo {

// ---- the Redis branch: everything Redis-specific is in this block ---------------------------------
namespace redis_branch {
#if defined(STAMPEDE_DEMO_HAVE_REDIS)
inline constexpr bool kAvailable = true;

template <class T>
stampede::Backend<T> backend(const std::string& url, bool near_cache) {
  auto client = stampede::redis::Client::connect(url);
  if (!near_cache) return stampede::redis::backend<T>(client);
  stampede::redis::BackendOptions o;
  o.near_cache.enabled = true;
  stampede::Backend<T> b = stampede::redis::backend<T>(client, o);
  // Wait (bounded) for tracking, so that the demo's reads can be near hits from the start.
  auto* store = dynamic_cast<stampede::redis::RedisStore<T>*>(b.store.get());
  if (store != nullptr) {
    (void)store->near_cache()->wait_for_tracking(std::chrono::steady_clock::now() + std::chrono::seconds(5));
  }
  return b;
}

inline std::shared_ptr<stampede::TokenLock> lock(const std::string& url) {
  auto client = stampede::redis::Client::connect(url);
  return std::make_shared<stampede::redis::RedisTokenLock>(client);
}
#else
inline constexpr bool kAvailable = false;

[[noreturn]] inline void unavailable() {
  throw usage_error(
      "--redis / REDIS_URL: this build has no Redis backend (the stampede::redis target was not built; "
      "install libhiredis-dev and reconfigure, or unset REDIS_URL to use the embedded backend)");
}

template <class T>
stampede::Backend<T> backend(const std::string& /*url*/, bool /*near_cache*/) {
  unavailable();
}

inline std::shared_ptr<stampede::TokenLock> lock(const std::string& /*url*/) { unavailable(); }
#endif
}  // namespace redis_branch
// ---- end of the Redis branch ---------------------------------------------------------------------

/// The backend chosen on the command line (or by REDIS_URL).
class BackendChoice {
 public:
  /// Declares `--redis URL` on `app`; without the flag CLI11 takes a non-empty $REDIS_URL. An empty
  /// URL (flag or variable) selects the embedded backend. Declare it on one App only: CLI11 fills
  /// environment-backed options of every subcommand, selected or not.
  void add_flags(CLI::App& app) {
    app.add_option("--redis", redis_url_,
                   "Redis URL, e.g. redis://127.0.0.1:6379/0 (empty = the embedded backend)")
        ->envname("REDIS_URL")
        ->type_name("URL");
    app.add_flag("--near-cache", near_cache_,
                 "with --redis: keep an in-process near cache, kept coherent by Redis's invalidations");
  }

  /// @return true when Redis was chosen.
  [[nodiscard]] bool redis() const noexcept { return !redis_url_.empty(); }
  /// @return true when --near-cache was given.
  [[nodiscard]] bool near_cache() const noexcept { return near_cache_; }
  /// @return "redis", "redis+near" or "memory", as the JSON field `backend` reports it.
  [[nodiscard]] std::string name() const {
    return redis() ? (near_cache_ ? "redis+near" : "redis") : "memory";
  }

  /// @return a store + lock for a Cache<T>.
  /// @throws usage_error if Redis was chosen in a build without it, or --near-cache without Redis;
  ///         stampede::backend_error if Redis cannot be reached.
  template <class T>
  [[nodiscard]] stampede::Backend<T> backend() const {
    if (near_cache_ && !redis()) throw usage_error("--near-cache needs --redis URL (or REDIS_URL)");
    if (redis()) return redis_branch::backend<T>(redis_url_, near_cache_);
    return stampede::memory_backend<T>();
  }

  /// @return the token lock alone (lock demos).
  [[nodiscard]] std::shared_ptr<stampede::TokenLock> lock() const {
    if (redis()) return redis_branch::lock(redis_url_);
    return std::make_shared<stampede::MemoryTokenLock>();
  }

 private:
  std::string redis_url_;
  bool near_cache_ = false;
};

}  // namespace demo
