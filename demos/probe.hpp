// demos/probe.hpp: tells a demo worker what its own call found in the store.
//
// ProbedStore<T> wraps any Store<T> and, on the calling thread, remembers what the first read of a
// call returned: nothing, a fresh entry or a stale one. Cache<T>::get_or_compute does that first read
// on the caller's thread, so a worker can label its request exactly (cache hit, stale hit, miss):
//
//   auto probed = demo::probe(choice.backend<Item>());          // wraps backend.store
//   demo::Probe::begin();  cache.get_or_compute(key, load);  demo::Found f = demo::Probe::first();
//
// Thread-safe: the record is thread_local; the wrapped store is called as is.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <stampede/cache.hpp>
#include <stampede/store.hpp>
#include <string_view>
#include <utility>

namespace demo {

/// What the first read of a call found.
enum class Found { nothing_yet, miss, fresh, stale };

/// The per-thread record of the current call: what its first read found, and whether a loader ran
/// on this thread. A loader that runs later on a refresher thread marks that thread, not the caller.
class Probe {
 public:
  /// Starts a new call on this thread.
  static void begin() noexcept {
    slot() = Found::nothing_yet;
    loaded() = false;
  }
  /// @return what the first read since begin() found (nothing_yet if there was no read).
  static Found first() noexcept { return slot(); }
  /// Records a read, if it is the first since begin().
  static void record(Found f) noexcept {
    if (slot() == Found::nothing_yet) slot() = f;
  }
  /// Called by a loader: "I ran on this thread".
  static void note_load() noexcept { loaded() = true; }
  /// @return true if a loader ran on this thread since begin().
  static bool loaded_here() noexcept { return loaded(); }

 private:
  static Found& slot() noexcept {
    thread_local Found found = Found::nothing_yet;
    return found;
  }
  static bool& loaded() noexcept {
    thread_local bool value = false;
    return value;
  }
};

/// A Store<T> that forwards to another and records reads in Probe. Thread-safe if the inner one is.
template <class T>
class ProbedStore final : public stampede::Store<T> {
 public:
  explicit ProbedStore(std::shared_ptr<stampede::Store<T>> inner) : inner_(std::move(inner)) {}

  std::optional<stampede::Entry<T>> get(std::string_view key,
                                        std::chrono::system_clock::time_point now) override {
    std::optional<stampede::Entry<T>> e = inner_->get(key, now);
    // Reads at time_point::min() are OnWaitTimeout::serve_stale's last resort, not a first look.
    if (now != std::chrono::system_clock::time_point::min()) {
      Probe::record(!e ? Found::miss : now < e->soft_expiry ? Found::fresh : Found::stale);
    }
    return e;
  }
  stampede::PutResult put(std::string_view key, const stampede::Entry<T>& entry,
                          std::chrono::system_clock::time_point now) override {
    return inner_->put(key, entry, now);
  }
  stampede::PutResult put_if_unchanged(std::string_view key, std::uint64_t expected,
                                       const stampede::Entry<T>& entry,
                                       std::chrono::system_clock::time_point now) override {
    return inner_->put_if_unchanged(key, expected, entry, now);
  }
  std::optional<stampede::Entry<T>> get_authoritative(std::string_view key,
                                                      std::chrono::system_clock::time_point now) override {
    return inner_->get_authoritative(key, now);  // a lock holder's re-check: not a first look
  }
  void invalidate(std::string_view key, std::uint64_t fence) override { inner_->invalidate(key, fence); }
  void add_counters(stampede::BackendCounters& counters) const override { inner_->add_counters(counters); }

 private:
  std::shared_ptr<stampede::Store<T>> inner_;
};

/// @return `backend` with its store wrapped in a ProbedStore.
template <class T>
stampede::Backend<T> probe(stampede::Backend<T> backend) {
  backend.store = std::make_shared<ProbedStore<T>>(std::move(backend.store));
  return backend;
}

}  // namespace demo
