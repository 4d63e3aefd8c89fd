// tests/redis/factory.hpp: the Redis backend factory for the typed conformance suites.
#pragma once

#include <memory>
#include <stampede/redis/redis.hpp>

#include "instances.hpp"  // RedisStore<int>, Cache<int>, ...: compiled once
#include "redis_server.hpp"

namespace redis_test {

/// Every call gets a fresh key prefix on the shared server, so tests never see each other's keys.
struct RedisFactory {
  static constexpr bool kClockDrivesLockExpiry = false;  // Redis expires locks on its own clock

  static std::shared_ptr<stampede::TokenLock> lock(std::shared_ptr<const stampede::Clock> /*clock*/) {
    return std::make_shared<stampede::redis::RedisTokenLock>(shared_client(), unique_prefix());
  }

  template <class T>
  static stampede::Backend<T> backend(std::shared_ptr<const stampede::Clock> /*clock*/) {
    return stampede::redis::backend<T>(shared_client(), unique_prefix());
  }
};

}  // namespace redis_test
