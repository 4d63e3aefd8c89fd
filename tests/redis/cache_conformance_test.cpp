// tests/redis/cache_conformance_test.cpp: the backend-agnostic Cache suite, run on Redis.
#include "cache_conformance.hpp"

#include "factory.hpp"

INSTANTIATE_TYPED_TEST_SUITE_P(Redis, CacheConformance, redis_test::RedisFactory);
