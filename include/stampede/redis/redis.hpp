// stampede/redis/redis.hpp: the umbrella header of the Redis backend (target stampede::redis).
//
//   #include <stampede/redis/redis.hpp>
//   auto client = stampede::redis::Client::connect(std::getenv("REDIS_URL"));
//   stampede::Cache<Item> cache({.ttl = 30s}, stampede::redis::backend<Item>(client));
#pragma once

#include "stampede/redis/backend.hpp"
#include "stampede/redis/bytes_store.hpp"
#include "stampede/redis/client.hpp"
#include "stampede/redis/connection.hpp"
#include "stampede/redis/near_cache.hpp"
#include "stampede/redis/redlock.hpp"
#include "stampede/redis/reply.hpp"
#include "stampede/redis/store.hpp"
#include "stampede/redis/token_lock.hpp"
#include "stampede/redis/url.hpp"
