// tests/support/put_hook_store.hpp: a Store<T> that runs a hook before each put, for tests that make
// a store write fail (the hook throws) or happen at a chosen moment (the hook waits).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "stampede/store.hpp"

namespace stampede_test {

/// Forwards to `inner`, except that put() and put_if_unchanged() call `before_put` first (which throws, or
/// returns to let the write through). Thread-safe if `before_put` is.
template <class T>
class PutHookStore final : public stampede::Store<T> {
 public:
  PutHookStore(std::shared_ptr<stampede::Store<T>> inner, std::function<void()> before_put)
      : inner_(std::move(inner)), before_put_(std::move(before_put)) {}
  std::optional<stampede::Entry<T>> get(std::string_view key,
                                        std::chrono::system_clock::time_point now) override {
    return inner_->get(key, now);
  }
  stampede::PutResult put(std::string_view key, const stampede::Entry<T>& entry,
                          std::chrono::system_clock::time_point now) override {
    before_put_();
    return inner_->put(key, entry, now);
  }
  stampede::PutResult put_if_unchanged(std::string_view key, std::uint64_t expected,
                                       const stampede::Entry<T>& entry,
                                       std::chrono::system_clock::time_point now) override {
    before_put_();
    return inner_->put_if_unchanged(key, expected, entry, now);
  }
  std::optional<stampede::Entry<T>> get_authoritative(std::string_view key,
                                                      std::chrono::system_clock::time_point now) override {
    return inner_->get_authoritative(key, now);
  }
  void invalidate(std::string_view key, std::uint64_t fence) override { inner_->invalidate(key, fence); }
  void add_counters(stampede::BackendCounters& counters) const override { inner_->add_counters(counters); }

 private:
  std::shared_ptr<stampede::Store<T>> inner_;
  std::function<void()> before_put_;
};

}  // namespace stampede_test
