// tests/redis/instances.hpp: the Redis store and near cache of the value types most Redis tests use,
// compiled once (instances.cpp) instead of in every test file of redis_test, next to the Cache<T>
// instantiations of support/instances.hpp.
#pragma once

#include <optional>
#include <string>

#include "stampede/codec.hpp"
#include "stampede/json.hpp"
#include "stampede/redis/near_cache.hpp"
#include "stampede/redis/store.hpp"
#include "support/instances.hpp"

// STAMPEDE_REDIS_TEST_INSTANCES(extern, T, Codec) declares the instantiations; (, T, Codec) defines them.
#define STAMPEDE_REDIS_TEST_INSTANCES(EXTERN, T, C)        \
  EXTERN template class stampede::redis::RedisStore<T, C>; \
  EXTERN template class stampede::redis::NearCache<T>

STAMPEDE_REDIS_TEST_INSTANCES(extern, int, stampede::JsonCodec<int>);
STAMPEDE_REDIS_TEST_INSTANCES(extern, std::string, stampede::JsonCodec<std::string>);
STAMPEDE_REDIS_TEST_INSTANCES(extern, std::optional<int>, stampede::JsonCodec<std::optional<int>>);
extern template class stampede::redis::RedisStore<std::string, stampede::StringCodec>;
