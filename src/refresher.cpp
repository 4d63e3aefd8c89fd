#include "stampede/refresher.hpp"

#include <stdexcept>
#include <utility>

namespace stampede {

Refresher::Refresher(Options options) : options_(options) {
  if (options_.threads == 0) throw std::invalid_argument("Refresher: threads must be >= 1");
  if (options_.queue == 0) throw std::invalid_argument("Refresher: queue must be >= 1");
}

Refresher::~Refresher() { stop(); }

Refresher::Submit Refresher::submit(std::string_view key, std::function<void()> task) {
  detail::MutexLock lock(mu_);
  if (stopping_) return Submit::stopped;
  if (keys_.contains(std::string(key))) return Submit::duplicate;
  if (queue_.size() >= options_.queue) return Submit::dropped;
  if (threads_.empty()) {
    threads_.reserve(options_.threads);
    for (std::size_t i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { run(); });
  }
  keys_.emplace(key);
  const std::uint64_t h = hash(key);
  hints_[h % kHints].store(h, std::memory_order_relaxed);
  queue_.push_back(Task{std::string(key), std::move(task)});
  work_cv_.notify_one();
  return Submit::queued;
}

void Refresher::clear_hint(std::string_view key) noexcept {
  const std::uint64_t h = hash(key);
  std::uint64_t expected = h;
  hints_[h % kHints].compare_exchange_strong(expected, 0, std::memory_order_relaxed);
}

void Refresher::run() noexcept {
  detail::MutexLock lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [this]() STAMPEDE_REQUIRES(mu_) { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    Task task = std::move(queue_.front());
    queue_.pop_front();
    ++running_;
    lock.unlock();
    try {
      task.fn();
    } catch (...) {
      // Tasks report through their owner's stats and hook; nothing may escape a worker thread.
    }
    task.fn = nullptr;  // destroy captures outside the lock
    lock.lock();
    --running_;
    keys_.erase(task.key);
    clear_hint(task.key);
    if (queue_.empty() && running_ == 0) idle_cv_.notify_all();
  }
}

void Refresher::stop() noexcept {
  std::vector<std::thread> threads;
  std::deque<Task> discarded;
  {
    detail::MutexLock lock(mu_);
    stopping_ = true;
    discarded.swap(queue_);
    for (const Task& t : discarded) {
      keys_.erase(t.key);
      clear_hint(t.key);
    }
    threads.swap(threads_);
    work_cv_.notify_all();
    idle_cv_.notify_all();
  }
  for (auto& t : threads) {
    if (t.joinable()) t.join();
  }
}

void Refresher::wait_idle() {
  detail::MutexLock lock(mu_);
  idle_cv_.wait(lock, [this]() STAMPEDE_REQUIRES(mu_) {
    return stopping_ || (queue_.empty() && running_ == 0);
  });
}

}  // namespace stampede
