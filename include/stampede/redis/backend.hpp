// stampede/redis/backend.hpp: backend<T>(), the Redis backend as a Backend<T>: many processes, one cache.
//
// RedisStore<T> + RedisTokenLock over one Client, named "redis". Every process that uses the same
// server and prefix shares the cache and its locks.
//
//   auto client = stampede::redis::Client::connect("redis://127.0.0.1:6379");
//   stampede::Cache<Item> cache({.ttl = 30s}, stampede::redis::backend<Item>(client, "shop:"));
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>

#include "stampede/backend.hpp"
#include "stampede/codec.hpp"
#include "stampede/json.hpp"
#include "stampede/redis/client.hpp"
#include "stampede/redis/store.hpp"
#include "stampede/redis/token_lock.hpp"

namespace stampede::redis {

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

}  // namespace stampede::redis
