// The backend-agnostic Cache and TokenLock suites, run on the in-process backend.
#include <memory>

#include "conformance/cache_conformance.hpp"
#include "conformance/lock_conformance.hpp"
#include "stampede/cache.hpp"
#include "stampede/memory/backend.hpp"

namespace {

/// The embedded backend: every call makes a fresh MemoryStore + MemoryTokenLock, so tests never
/// share state. Lock expiry follows the injected clock.
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

}  // namespace

STAMPEDE_INSTANTIATE_CACHE_CONFORMANCE(MemoryCache, MemoryFactory);
INSTANTIATE_TYPED_TEST_SUITE_P(MemoryLock, LockConformance, MemoryFactory);
