#include "stampede/detail/fork.hpp"

#include <pthread.h>

#include <new>

namespace stampede::detail {

std::atomic<std::uint64_t> fork_generation_counter{0};

namespace {

// Registered when the library's static initialisers run. The child handler runs in the child right
// after fork(), on the only thread there is, before fork() returns.
[[maybe_unused]] const int registered = ::pthread_atfork(
    nullptr, nullptr, [] { fork_generation_counter.fetch_add(1, std::memory_order_relaxed); });

// A node of the list of abandoned states.
struct Abandoned {
  const void* state;
  Abandoned* next;
};

// A list that only grows, rooted in a global, so everything on it stays reachable.
std::atomic<Abandoned*> abandoned{nullptr};

}  // namespace

void keep_abandoned(const void* state) noexcept {
  auto* node = new (std::nothrow) Abandoned{state, abandoned.load(std::memory_order_relaxed)};
  if (node == nullptr) return;  // then it is merely unreachable: still never destroyed
  while (!abandoned.compare_exchange_weak(node->next, node, std::memory_order_release,
                                          std::memory_order_relaxed)) {
  }
}

}  // namespace stampede::detail
