// tests/redis/cache_conformance_test.cpp: the backend-agnostic Cache suites, run on Redis.
#include "conformance/cache_conformance.hpp"

#include "factory.hpp"

STAMPEDE_INSTANTIATE_CACHE_CONFORMANCE(Redis, redis_test::RedisFactory);
