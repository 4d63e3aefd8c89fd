// src/redis/node_workers.hpp: the threads that make a Redlock's calls to one of its nodes.
//
// A Redlock calls all of its nodes at once and waits for each at most node_timeout; a call that
// answers later finishes in the background. NodeWorkers runs those calls for one node, in the
// order they were posted, on up to max_threads threads that start on demand and live as long as
// the NodeWorkers. A hung node thus ties up at most max_threads threads (each for at most the
// node Client's timeouts), never a caller of the Redlock.
//
//   detail::NodeWorkers workers(client->options().pool_size);
//   if (!workers.post([round] { round->answer(0, call()); })) round->fail(0, "node busy");
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>

namespace stampede::redis::detail {

/// Thread-safe. Lifetime: the destructor drops the calls that have not started and joins the
/// threads, so it waits for the calls in progress (bounded by the node Client's timeouts).
/// fork(): in a child, the first post() replaces the state with an empty one of its own and
/// abandons the parent's (its threads do not exist in the child; its queued calls never run);
/// the destructor of a NodeWorkers whose state is the parent's abandons it instead of joining.
class NodeWorkers {
 public:
  /// Most calls queued for one node (beyond that, post() refuses: the node is hung).
  static constexpr std::size_t kMaxQueued = 1024;

  /// @param max_threads threads that may run calls at once, >= 1 (a node's pool_size: more
  ///        threads would only wait for a connection).
  explicit NodeWorkers(std::size_t max_threads);
  ~NodeWorkers();
  NodeWorkers(const NodeWorkers&) = delete;
  NodeWorkers& operator=(const NodeWorkers&) = delete;

  /// Queues `call` to run on a worker thread. `call` must not throw (an exception from it is
  /// swallowed).
  /// @return false (and `call` is dropped) if kMaxQueued calls are already waiting.
  bool post(std::function<void()> call);

 private:
  struct State;
  State& state();

  const std::size_t max_threads_;
  std::atomic<State*> state_;
};

}  // namespace stampede::redis::detail
