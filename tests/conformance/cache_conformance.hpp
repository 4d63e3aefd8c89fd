// tests/conformance/cache_conformance.hpp: every typed Cache<T> conformance suite, and the one line
// that runs them all on a backend. The topics and the factory a backend provides are described in
// cache_fixture.hpp.
//
//   STAMPEDE_INSTANTIATE_CACHE_CONFORMANCE(MemoryCache, MemoryFactory);
//   // ctest names: MemoryCache/CacheLookup/0.PutStoresAndInvalidateRemoves, MemoryCache/CacheSwr/0...
#pragma once

#include <gtest/gtest.h>

#include "conformance/cache_caller_control.hpp"
#include "conformance/cache_coalescing.hpp"
#include "conformance/cache_fail_safe.hpp"
#include "conformance/cache_failures.hpp"
#include "conformance/cache_fencing.hpp"
#include "conformance/cache_fixture.hpp"
#include "conformance/cache_loader_timeouts.hpp"
#include "conformance/cache_lookup.hpp"
#include "conformance/cache_negative_caching.hpp"
#include "conformance/cache_swr.hpp"
#include "conformance/cache_timeouts.hpp"

/// Instantiates every Cache conformance topic for `Factory`, named `Prefix/<Topic>/0.<Test>`.
/// Use at namespace scope, followed by a semicolon.
#define STAMPEDE_INSTANTIATE_CACHE_CONFORMANCE(Prefix, Factory)          \
  INSTANTIATE_TYPED_TEST_SUITE_P(Prefix, CacheLookup, Factory);          \
  INSTANTIATE_TYPED_TEST_SUITE_P(Prefix, CacheCoalescing, Factory);      \
  INSTANTIATE_TYPED_TEST_SUITE_P(Prefix, CacheTimeouts, Factory);        \
  INSTANTIATE_TYPED_TEST_SUITE_P(Prefix, CacheSwr, Factory);             \
  INSTANTIATE_TYPED_TEST_SUITE_P(Prefix, CacheFencing, Factory);         \
  INSTANTIATE_TYPED_TEST_SUITE_P(Prefix, CacheFailures, Factory);        \
  INSTANTIATE_TYPED_TEST_SUITE_P(Prefix, CacheCallerControl, Factory);   \
  INSTANTIATE_TYPED_TEST_SUITE_P(Prefix, CacheNegativeCaching, Factory); \
  INSTANTIATE_TYPED_TEST_SUITE_P(Prefix, CacheLoaderTimeouts, Factory);  \
  INSTANTIATE_TYPED_TEST_SUITE_P(Prefix, CacheFailSafe, Factory)
