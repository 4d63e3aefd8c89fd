#include "node_workers.hpp"

#include <condition_variable>
#include <deque>
#include <memory>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "stampede/detail/fork.hpp"
#include "stampede/detail/thread_annotations.hpp"

namespace stampede::redis::detail {

// The mutable part, built for one fork generation.
struct NodeWorkers::State {
  explicit State(std::uint64_t g) noexcept : generation(g) {}

  void run() {
    stampede::detail::MutexLock l(mu);
    for (;;) {
      ++idle;
      cv.wait(l, [this]() STAMPEDE_NO_THREAD_SAFETY_ANALYSIS { return stopping || !queue.empty(); });
      --idle;
      if (stopping) return;
      std::function<void()> call = std::move(queue.front());
      queue.pop_front();
      l.unlock();
      try {
        call();
      } catch (...) {
        // A call reports its own failures; nothing may escape a worker thread.
      }
      call = nullptr;  // destroyed outside the lock: it may hold the last reference to a Round
      l.lock();
    }
  }

  const std::uint64_t generation;
  stampede::detail::Mutex mu;
  std::condition_variable_any cv;
  std::deque<std::function<void()>> queue STAMPEDE_GUARDED_BY(mu);
  std::vector<std::thread> threads STAMPEDE_GUARDED_BY(mu);
  std::size_t idle STAMPEDE_GUARDED_BY(mu) = 0;
  bool stopping STAMPEDE_GUARDED_BY(mu) = false;
};

NodeWorkers::NodeWorkers(std::size_t max_threads)
    : max_threads_(max_threads == 0 ? 1 : max_threads),
      state_(new State(stampede::detail::fork_generation())) {}

NodeWorkers::~NodeWorkers() {
  State* s = state_.load(std::memory_order_acquire);
  if (s->generation != stampede::detail::fork_generation()) {
    stampede::detail::keep_abandoned(s);  // a child that never posted: the parent's threads do not exist here
    return;
  }
  std::vector<std::thread> threads;
  std::deque<std::function<void()>> dropped;
  {
    stampede::detail::MutexLock l(s->mu);
    s->stopping = true;
    threads.swap(s->threads);
    dropped.swap(s->queue);
  }
  s->cv.notify_all();
  for (std::thread& t : threads) t.join();
  delete s;
}

NodeWorkers::State& NodeWorkers::state() {
  State* s = state_.load(std::memory_order_acquire);
  const std::uint64_t generation = stampede::detail::fork_generation();
  if (s->generation == generation) [[likely]] {
    return *s;
  }
  auto fresh = std::make_unique<State>(generation);
  if (state_.compare_exchange_strong(s, fresh.get(), std::memory_order_acq_rel, std::memory_order_acquire)) {
    stampede::detail::keep_abandoned(s);
    return *fresh.release();
  }
  return *s;  // another thread of the child replaced it first
}

bool NodeWorkers::post(std::function<void()> call) {
  State& s = state();
  {
    stampede::detail::MutexLock l(s.mu);
    if (s.queue.size() >= kMaxQueued) return false;
    s.queue.push_back(std::move(call));
    if (s.idle == 0 && s.threads.size() < max_threads_) {
      try {
        s.threads.emplace_back([&s] { s.run(); });
      } catch (const std::system_error&) {
        // No thread now: an existing one takes the call when it is free, or the caller's wait for
        // this node times out.
      }
      return true;
    }
  }
  s.cv.notify_one();
  return true;
}

}  // namespace stampede::redis::detail
