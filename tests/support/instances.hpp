// tests/support/instances.hpp: Cache<T> with its flight and embedded store, for the value types most
// tests use (int, std::string, std::optional<int>), compiled once in the test support library
// (support/instances_*.cpp) instead of again in every test file that uses them.
//
// A test file includes it after the library's headers; the members it calls are then linked from
// stampede_test_support. Only non-template members are shared: get_or_compute<Loader> and the
// other member templates are still compiled where they are called (they are thin: the miss path
// takes the loader as detail::LoaderRef<T>).
#pragma once

#include <optional>
#include <string>

#include "stampede/cache.hpp"
#include "stampede/memory/store.hpp"

// STAMPEDE_TEST_INSTANCES(extern, T) declares the instantiations; (, T) defines them.
#define STAMPEDE_TEST_INSTANCES(EXTERN, T)                \
  EXTERN template class stampede::Store<T>;               \
  EXTERN template class stampede::MemoryStore<T>;         \
  EXTERN template class stampede::detail::Flight<T>;      \
  EXTERN template class stampede::detail::FlightGroup<T>; \
  EXTERN template class stampede::Cache<T>

STAMPEDE_TEST_INSTANCES(extern, int);
STAMPEDE_TEST_INSTANCES(extern, std::string);
STAMPEDE_TEST_INSTANCES(extern, std::optional<int>);
