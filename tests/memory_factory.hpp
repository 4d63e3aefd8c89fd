// tests/memory_factory.hpp: the embedded backend's factory for the typed conformance suites.
#pragma once

#include <memory>

#include "stampede/cache.hpp"
#include "stampede/memory/backend.hpp"

namespace memory_test {

/// Every call makes a fresh MemoryStore + MemoryTokenLock, so tests never share state. Lock expiry
/// follows the injected clock.
struct MemoryFactory {
  template <class T>
  static stampede::Backend<T> backend(std::shared_ptr<const stampede::Clock> clock) {
    return stampede::memory_backend<T>(0, std::move(clock));
  }
  static std::shared_ptr<stampede::TokenLock> lock(std::shared_ptr<const stampede::Clock> clock) {
    return std::make_shared<stampede::MemoryTokenLock>(std::move(clock));
  }
  static constexpr bool kClockDrivesLockExpiry = true;
};

}  // namespace memory_test
