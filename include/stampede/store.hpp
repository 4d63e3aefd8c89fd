// stampede/store.hpp: where a Cache keeps its entries.
//
// A Store<T> holds entries with a soft and a hard expiry and the fence of the write that made
// them. A write carrying a fence lower than one the store has already seen for the key (from a
// write or an invalidation) is refused: a loader whose lock expired cannot overwrite newer data.
//
//   auto store = std::make_shared<stampede::MemoryStore<Item>>();
//   store->put("item:1", {.value = item, .soft_expiry = t + 10s, .hard_expiry = t + 20s, .fence = 7});
//   if (auto e = store->get("item:1")) use(e->value);
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

#include "stampede/detail/function_ref.hpp"
#include "stampede/stats.hpp"

namespace stampede {

/// One cached value with its expiry and provenance.
template <class T>
struct Entry {
  T value{};
  /// Fresh until this time (blocking mode: equal to hard_expiry).
  std::chrono::system_clock::time_point soft_expiry{};
  /// Gone after this time.
  std::chrono::system_clock::time_point hard_expiry{};
  /// Fence of the write that stored it.
  std::uint64_t fence = 0;
  /// How long the loader took (the delta of XFetch early refresh).
  std::chrono::milliseconds load_time{0};
};

/// Result of Store::put.
enum class PutResult {
  stored,
  stale_fence,  ///< refused: the store has seen a higher fence for this key
};

/// A backend's entry store. Implementations are thread-safe and throw stampede::backend_error when
/// their server fails. Expired entries are never returned (the store is given `now`). A store
/// reports counters of its own (evictions, ...) through add_counters(): the Cache never asks for
/// its type.
template <class T>
class Store {
 public:
  virtual ~Store() = default;

  /// @return the entry if present and now < hard_expiry, else std::nullopt.
  /// @throws codec_error if the stored bytes cannot be decoded (callers treat it as a miss).
  virtual std::optional<Entry<T>> get(std::string_view key, std::chrono::system_clock::time_point now) = 0;

  /// get() from the authoritative copy: a store that keeps a local copy of another (a near cache
  /// over Redis, which may lag another process's write) reads the other. The Cache calls it where it
  /// holds the key's lock and decides from what it reads whether to load or to write (the leader's
  /// double check, a refresh's check of the entry it saw). The default calls get().
  /// @throws as get().
  virtual std::optional<Entry<T>> get_authoritative(std::string_view key,
                                                    std::chrono::system_clock::time_point now) {
    return get(key, now);
  }

  /// Calls `fn` with the entry that get() would return, if there is one. A store that can passes
  /// its own entry in place, without copying it, and keeps it from changing while `fn` runs (`fn`
  /// must then not call into this store); the default calls get() and passes its copy.
  /// @return true if `fn` was called.
  /// @throws as get(); whatever `fn` throws.
  virtual bool visit(std::string_view key, std::chrono::system_clock::time_point now,
                     detail::FunctionRef<void(const Entry<T>&)> fn) {
    std::optional<Entry<T>> e = get(key, now);
    if (!e) return false;
    fn(*e);
    return true;
  }

  /// Stores `entry` unless a higher fence than entry.fence was seen for the key.
  virtual PutResult put(std::string_view key, const Entry<T>& entry,
                        std::chrono::system_clock::time_point now) = 0;

  /// Removes the entry and remembers `fence`, so later puts with a lower fence are refused.
  virtual void invalidate(std::string_view key, std::uint64_t fence) = 0;

  /// Stores `entry` only if the key still holds the entry that was stored with fence `expected`
  /// (no write and no invalidation since, in this process or any other) and put() would accept
  /// entry.fence. Fail-safe re-arms a last good value with it: a value that an invalidate() or a
  /// put() has replaced never comes back, whatever copy of it the caller read.
  /// A store should override it with one atomic step, judged by the authoritative copy (not a
  /// local cache of it). The default is not atomic: it checks with get() (with time_point::min(),
  /// so an expired entry counts) and then calls put(), so a write that lands between the two is
  /// overwritten.
  /// @return PutResult::stored, or PutResult::stale_fence if the entry changed, is gone, or the fence
  ///         is refused.
  virtual PutResult put_if_unchanged(std::string_view key, std::uint64_t expected, const Entry<T>& entry,
                                     std::chrono::system_clock::time_point now) {
    std::optional<Entry<T>> held = get(key, std::chrono::system_clock::time_point::min());
    if (!held || held->fence != expected) return PutResult::stale_fence;
    return put(key, entry, now);
  }

  /// Adds the counters this store keeps (those of STAMPEDE_BACKEND_COUNTERS, e.g. evictions) to
  /// `counters`, for Cache::stats(). The default keeps none and adds nothing; a store that wraps
  /// another forwards to it. Thread-safe; cheap (it runs on every stats() call).
  /// @param counters what the caller has gathered so far; add to its fields, do not overwrite them.
  virtual void add_counters(BackendCounters& counters) const { (void)counters; }

  /// @return true if get() and visit() answer from this process's memory and never wait for I/O,
  ///         so that an asynchronous caller (stampede/asio.hpp) may read on its own thread; false
  ///         (the default) sends its reads to a thread that may block.
  [[nodiscard]] virtual bool reads_locally() const noexcept { return false; }
};

}  // namespace stampede
