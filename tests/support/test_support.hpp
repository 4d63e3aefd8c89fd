// tests/support/test_support.hpp: helpers shared by stampede's test binaries and conformance suites.
//
// eventually() waits for a condition that another thread will make true (a hang guard, never a
// timing assertion); CountingLock and HookedStore decorate a backend's TokenLock / Store<T> so a
// test can observe or steer the exact step a Cache is at.
//
//   auto lock = std::make_shared<stampede_test::CountingLock>(backend.lock);
//   std::thread t([&] { (void)stampede::acquire(*lock, "k", 1s, {.timeout = 10min}); });
//   ASSERT_TRUE(stampede_test::eventually([&] { return lock->failed_acquires() >= 1; }));
#pragma once

#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "stampede/store.hpp"
#include "stampede/token_lock.hpp"

namespace stampede_test {

/// Hang guard for conditions that another thread is certain to make true. Never used to assert
/// how long something takes: on a healthy run the condition always comes true well before it.
inline constexpr std::chrono::seconds kHangGuard{60};

/// Polls `pred` (about every millisecond) until it is true or `limit` passes.
/// @return true if `pred` became true.
template <class Pred>
bool eventually(Pred&& pred, std::chrono::milliseconds limit = kHangGuard) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

/// Waits (with the hang guard) for the fork()ed child `pid` to exit; a child that hangs is killed.
/// @return its wait status (see waitpid), or std::nullopt if it hung.
inline std::optional<int> reap_child(pid_t pid) {
  int status = 0;
  if (eventually([&] { return ::waitpid(pid, &status, WNOHANG) == pid; })) return status;
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return std::nullopt;
}

/// A one-shot gate: wait() blocks until open(). Unlike std::latch, open() may be called any number
/// of times, so a scope guard can open it on every exit path (no thread left blocked). Thread-safe.
class Gate {
 public:
  void open() {
    {
      std::lock_guard lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return open_; });
  }
  /// Hang-guarded wait for a gate that another thread is expected to open.
  /// @return true if the gate is open, false if `limit` passed first.
  [[nodiscard]] bool wait_for(std::chrono::milliseconds limit = kHangGuard) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [this] { return open_; });
  }
  bool is_open() {
    std::lock_guard lock(mu_);
    return open_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

/// Opens a Gate when it goes out of scope (declare it after the threads that wait on the gate, so
/// it runs before they are joined).
class OpenOnExit {
 public:
  explicit OpenOnExit(Gate& gate) : gate_(gate) {}
  ~OpenOnExit() { gate_.open(); }
  OpenOnExit(const OpenOnExit&) = delete;
  OpenOnExit& operator=(const OpenOnExit&) = delete;

 private:
  Gate& gate_;
};

/// @return true if `text` contains `word` not directly preceded or followed by [A-Za-z0-9_]
/// (so "ttl" is found in "options.ttl must be > 0" but not in "soft_ttl must be > 0").
inline bool mentions_word(std::string_view text, std::string_view word) {
  auto is_word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_'; };
  for (std::size_t pos = text.find(word); pos != std::string_view::npos; pos = text.find(word, pos + 1)) {
    const bool left_ok = pos == 0 || !is_word(text[pos - 1]);
    const bool right_ok = pos + word.size() == text.size() || !is_word(text[pos + word.size()]);
    if (left_ok && right_ok) return true;
  }
  return false;
}

/// @return true if `token` is 32 lowercase hex characters (128 bits).
inline bool is_token_format(std::string_view token) {
  if (token.size() != 32) return false;
  for (char c : token) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

/// A TokenLock that forwards every call to another: the base of the test locks that change one
/// step (override that do_* and call ForwardingLock's for the real one). Thread-safe if `inner` is.
class ForwardingLock : public stampede::TokenLock {
 public:
  explicit ForwardingLock(std::shared_ptr<stampede::TokenLock> inner) : inner_(std::move(inner)) {}

 protected:
  std::optional<stampede::LockToken> do_try_acquire(std::string_view key,
                                                    std::chrono::milliseconds ttl) override {
    return inner_->try_acquire(key, ttl);
  }
  bool do_release(std::string_view key, std::string_view token) override {
    return inner_->release(key, token);
  }
  bool do_renew(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) override {
    return inner_->renew(key, token, ttl);
  }
  std::uint64_t do_bump_fence(std::string_view key) override { return inner_->bump_fence(key); }
  std::unique_ptr<stampede::Subscription> do_subscribe(std::string_view key) override {
    return inner_->subscribe(key);
  }
  void do_notify(std::string_view key) override { inner_->notify(key); }

 private:
  std::shared_ptr<stampede::TokenLock> inner_;
};

/// A TokenLock that forwards to another and counts try_acquire outcomes. Thread-safe.
class CountingLock final : public ForwardingLock {
 public:
  using ForwardingLock::ForwardingLock;

 private:
  std::optional<stampede::LockToken> do_try_acquire(std::string_view key,
                                                    std::chrono::milliseconds ttl) override {
    std::optional<stampede::LockToken> token = ForwardingLock::do_try_acquire(key, ttl);
    (token ? acquired_ : failed_).fetch_add(1, std::memory_order_acq_rel);
    return token;
  }
  bool do_renew(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) override {
    const bool renewed = ForwardingLock::do_renew(key, token, ttl);
    renews_.fetch_add(1, std::memory_order_acq_rel);
    return renewed;
  }

 public:
  /// @return try_acquire calls that found the lock held.
  int failed_acquires() const noexcept { return failed_.load(std::memory_order_acquire); }
  /// @return try_acquire calls that took the lock.
  int successful_acquires() const noexcept { return acquired_.load(std::memory_order_acquire); }
  /// @return renew calls that have returned (successful or not).
  int renews() const noexcept { return renews_.load(std::memory_order_acquire); }

 private:
  std::atomic<int> acquired_{0};
  std::atomic<int> failed_{0};
  std::atomic<int> renews_{0};
};

/// A Store<T> that forwards to another and runs `before_get(key, n)` before the n-th get (1-based).
/// Thread-safe once built; set before_get before sharing the store.
template <class T>
class HookedStore final : public stampede::Store<T> {
 public:
  using time_point = std::chrono::system_clock::time_point;

  explicit HookedStore(std::shared_ptr<stampede::Store<T>> inner) : inner_(std::move(inner)) {}

  std::optional<stampede::Entry<T>> get(std::string_view key, time_point now) override {
    const int n = gets_.fetch_add(1, std::memory_order_acq_rel) + 1;
    if (before_get) before_get(key, n);
    return inner_->get(key, now);
  }
  stampede::PutResult put(std::string_view key, const stampede::Entry<T>& entry, time_point now) override {
    puts_.fetch_add(1, std::memory_order_acq_rel);
    return inner_->put(key, entry, now);
  }
  stampede::PutResult put_if_unchanged(std::string_view key, std::uint64_t expected,
                                       const stampede::Entry<T>& entry, time_point now) override {
    puts_.fetch_add(1, std::memory_order_acq_rel);
    return inner_->put_if_unchanged(key, expected, entry, now);
  }
  /// Counted as a get (and hooked), like get().
  std::optional<stampede::Entry<T>> get_authoritative(std::string_view key, time_point now) override {
    const int n = gets_.fetch_add(1, std::memory_order_acq_rel) + 1;
    if (before_get) before_get(key, n);
    return inner_->get_authoritative(key, now);
  }
  void invalidate(std::string_view key, std::uint64_t fence) override { inner_->invalidate(key, fence); }
  void add_counters(stampede::BackendCounters& counters) const override { inner_->add_counters(counters); }

  /// @return get calls so far.
  int gets() const noexcept { return gets_.load(std::memory_order_acquire); }
  /// @return put calls so far.
  int puts() const noexcept { return puts_.load(std::memory_order_acquire); }
  const std::shared_ptr<stampede::Store<T>>& inner() const noexcept { return inner_; }

  std::function<void(std::string_view key, int n)> before_get;

 private:
  std::shared_ptr<stampede::Store<T>> inner_;
  std::atomic<int> gets_{0};
  std::atomic<int> puts_{0};
};

}  // namespace stampede_test
