#include "stampede/detail/refresher.hpp"

#include <stdexcept>
#include <utility>

namespace stampede::detail {

Refresher::Refresher(Options options) {
  if (options.threads == 0) throw std::invalid_argument("stampede::detail::Refresher: threads must be >= 1");
  if (options.queue == 0) throw std::invalid_argument("stampede::detail::Refresher: queue must be >= 1");
  core_.store(new std::shared_ptr<Core>(std::make_shared<Core>(options, fork_generation())),
              std::memory_order_release);
}

Refresher::~Refresher() {
  stop();
  delete core_.load(std::memory_order_acquire);  // the workers hold their own references
}

const std::shared_ptr<Refresher::Core>& Refresher::core() {
  const std::uint64_t generation = fork_generation();
  std::shared_ptr<Core>* current = core_.load(std::memory_order_acquire);
  while ((*current)->generation != generation) {
    auto fresh =
        std::make_unique<std::shared_ptr<Core>>(std::make_shared<Core>((*current)->options, generation));
    if (core_.compare_exchange_strong(current, fresh.get(), std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
      keep_abandoned(current);
      current = fresh.release();
    }  // else `current` is now the core another thread installed: check it
  }
  return *current;
}

Refresher::Submit Refresher::submit(std::string_view key, std::function<void()> task) {
  const std::shared_ptr<Core>& shared = core();
  Core& c = *shared;
  MutexLock lock(c.mu);
  if (c.stopping) return Submit::stopped;
  if (c.keys.contains(std::string(key))) return Submit::duplicate;
  if (c.queue.size() >= c.options.queue) return Submit::dropped;
  // Queued tasks are taken by idle threads first: a thread is free for this one only if there are
  // more threads than running and queued tasks.
  if (c.options.idle_only && c.running + c.queue.size() >= c.options.threads) return Submit::dropped;
  if (c.threads.empty()) {
    c.threads.reserve(c.options.threads);
    for (std::size_t i = 0; i < c.options.threads; ++i) c.threads.emplace_back([shared] { run(shared); });
  }
  c.keys.emplace(key);
  const std::uint64_t h = hash(key);
  c.hints[h % kHints].store(h, std::memory_order_relaxed);
  c.queue.push_back(Task{std::string(key), std::move(task)});
  c.work_cv.notify_one();
  return Submit::queued;
}

void Refresher::clear_hint(Core& core, std::string_view key) noexcept {
  const std::uint64_t h = hash(key);
  std::uint64_t expected = h;
  core.hints[h % kHints].compare_exchange_strong(expected, 0, std::memory_order_relaxed);
}

// A worker uses only its own reference to the core, never the Refresher: a task may destroy the
// Refresher (its last captures are destroyed below, outside the lock).
void Refresher::run(const std::shared_ptr<Core>& shared) noexcept {
  Core& c = *shared;
  MutexLock lock(c.mu);
  for (;;) {
    c.work_cv.wait(lock, [&c]() STAMPEDE_REQUIRES(c.mu) { return c.stopping || !c.queue.empty(); });
    if (c.stopping) return;
    Task task = std::move(c.queue.front());
    c.queue.pop_front();
    ++c.running;
    lock.unlock();
    try {
      task.fn();
    } catch (...) {
      // Tasks report through their owner's stats and hook; nothing may escape a worker thread.
    }
    task.fn = nullptr;  // destroy captures outside the lock
    lock.lock();
    --c.running;
    c.keys.erase(task.key);
    clear_hint(c, task.key);
    if (c.queue.empty() && c.running == 0) c.idle_cv.notify_all();
  }
}

void Refresher::stop() noexcept {
  Core& c = *core();
  std::vector<std::thread> threads;
  std::deque<Task> discarded;
  {
    MutexLock lock(c.mu);
    c.stopping = true;
    discarded.swap(c.queue);
    for (const Task& t : discarded) {
      c.keys.erase(t.key);
      clear_hint(c, t.key);
    }
    threads.swap(c.threads);
    c.work_cv.notify_all();
    c.idle_cv.notify_all();
  }
  for (auto& t : threads) {
    if (t.get_id() == std::this_thread::get_id()) {
      t.detach();  // called from a task: this worker returns by itself once the task is done
    } else if (t.joinable()) {
      t.join();
    }
  }
}

void Refresher::wait_idle() {
  Core& c = *core();
  MutexLock lock(c.mu);
  c.idle_cv.wait(
      lock, [&c]() STAMPEDE_REQUIRES(c.mu) { return c.stopping || (c.queue.empty() && c.running == 0); });
}

}  // namespace stampede::detail
