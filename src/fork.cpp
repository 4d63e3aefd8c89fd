#include "stampede/detail/fork.hpp"

#include <pthread.h>

namespace stampede::detail {

std::atomic<std::uint64_t> fork_generation_counter{0};

namespace {

// Registered when the library's static initialisers run. The child handler runs in the child right
// after fork(), on the only thread there is, before fork() returns.
[[maybe_unused]] const int registered = ::pthread_atfork(
    nullptr, nullptr, [] { fork_generation_counter.fetch_add(1, std::memory_order_relaxed); });

}  // namespace
}  // namespace stampede::detail
