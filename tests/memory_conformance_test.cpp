// The backend-agnostic TokenLock suite, run on the in-process backend. The Cache topics
// (conformance/cache_*.hpp) are instantiated for it in generated files, one per topic: see
// stampede_conformance_sources in tests/CMakeLists.txt.
#include "conformance/lock_conformance.hpp"
#include "memory_factory.hpp"

INSTANTIATE_TYPED_TEST_SUITE_P(MemoryLock, LockConformance, memory_test::MemoryFactory);
