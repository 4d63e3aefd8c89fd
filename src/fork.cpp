#include "stampede/detail/fork.hpp"

#include <pthread.h>

namespace stampede::detail {
namespace {

std::atomic<std::uint64_t> generation{0};

// Registered once, when this file's code is first loaded. The child handler runs in the child
// right after fork(), on the only thread there is, before fork() returns.
[[maybe_unused]] const int registered = ::pthread_atfork(
    nullptr, nullptr, [] { generation.fetch_add(1, std::memory_order_relaxed); });

}  // namespace

std::uint64_t fork_generation() noexcept { return generation.load(std::memory_order_relaxed); }

}  // namespace stampede::detail
