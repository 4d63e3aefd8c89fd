// stampede/redis/backend.hpp: backend<T>(), the Redis backend as a Backend<T>: many processes, one cache.
//
// RedisStore<T> + RedisTokenLock over one Client, named "redis". Every process that uses the same
// server and prefix shares the cache and its locks.
//
//   auto client = stampede::redis::Client::connect("redis://127.0.0.1:6379");
//   stampede::Cache<Item> cache({.ttl = 30s}, stampede::redis::backend<Item>(client, "shop:"));
//   stampede::redis::BackendOptions o{.prefix = "shop:", .near_cache = {.enabled = true}};
//   stampede::Cache<Item> near({.ttl = 30s}, stampede::redis::backend<Item>(client, o));
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>

#include "stampede/backend.hpp"
#include "stampede/codec.hpp"
#include "stampede/json.hpp"
#include "stampede/redis/client.hpp"
#include "stampede/redis/near_cache.hpp"
#include "stampede/redis/store.hpp"
#include "stampede/redis/token_lock.hpp"

namespace stampede::redis {

/// Settings of backend(). Plain values.
struct BackendOptions {
  /// Put in front of every key; must not contain '{' or '}'.
  std::string prefix = "stampede:";
  /// How long Redis keeps a value past its hard expiry (see RedisBytesStore); >= 0.
  std::chrono::milliseconds grace = kDefaultGrace;
  /// The in-process near cache (off by default); see NearCacheOptions.
  NearCacheOptions near_cache;
};

/// A Cache backend over one Redis: RedisStore<T, C> + RedisTokenLock sharing `client`, named
/// "redis". Every process that uses the same server and prefix shares the cache.
/// @param client the pool.
/// @param prefix put in front of every key; must not contain '{' or '}'.
/// @param grace see RedisBytesStore.
/// @return the backend.
/// @throws std::invalid_argument as RedisStore and RedisTokenLock do.
template <class T, Codec<T> C = JsonCodec<T>>
Backend<T> backend(std::shared_ptr<Client> client,
                   std::string prefix = "stampede:", std::chrono::milliseconds grace = kDefaultGrace) {
  auto store = std::make_shared<RedisStore<T, C>>(client, prefix, grace);
  auto lock = std::make_shared<RedisTokenLock>(std::move(client), std::move(prefix));
  return Backend<T>{std::move(store), std::move(lock), "redis"};
}

/// A Cache backend over one Redis, with the settings of `options` (e.g. a near cache).
/// @param client the pool.
/// @param options see BackendOptions.
/// @return the backend, named "redis" (with a near cache: "redis+near").
/// @throws std::invalid_argument naming the first bad option; backend_error if the near cache's
///         tracker cannot start.
template <class T, Codec<T> C = JsonCodec<T>>
Backend<T> backend(std::shared_ptr<Client> client, BackendOptions options) {
  const bool near = options.near_cache.enabled;
  auto store = std::make_shared<RedisStore<T, C>>(client, options.prefix, options.grace,
                                                  std::move(options.near_cache));
  auto lock = std::make_shared<RedisTokenLock>(std::move(client), std::move(options.prefix));
  return Backend<T>{std::move(store), std::move(lock), near ? "redis+near" : "redis"};
}

}  // namespace stampede::redis
