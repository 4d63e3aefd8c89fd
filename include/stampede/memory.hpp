// stampede/memory.hpp: the in-process backend, the embedded default (no server needed).
//
// MemoryTokenLock and MemoryStore<T> keep locks and entries in this process. A Cache built
// without a backend uses them; they are also usable on their own:
//
//   auto lock = std::make_shared<stampede::MemoryTokenLock>();
//   if (auto t = lock->try_acquire("job:1", 5s)) { work(); lock->release("job:1", t->token); }
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "stampede/clock.hpp"
#include "stampede/detail/read_mostly_mutex.hpp"
#include "stampede/detail/thread_annotations.hpp"
#include "stampede/store.hpp"
#include "stampede/token_lock.hpp"

namespace stampede {

namespace detail {
/// Transparent string hash so maps keyed by std::string can be searched with a string_view.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

/// A key whose hash is already known, so a sharded map hashes it once, not once per level.
struct PrehashedKey {
  std::string_view key;
  std::size_t hash;
};

/// Hash and equality of std::string keys that also accept a PrehashedKey (heterogeneous lookup).
struct PrehashedHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  std::size_t operator()(const PrehashedKey& k) const noexcept { return k.hash; }
};
struct PrehashedEqual {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
  bool operator()(const PrehashedKey& a, std::string_view b) const noexcept { return a.key == b; }
  bool operator()(std::string_view a, const PrehashedKey& b) const noexcept { return a == b.key; }
};
}  // namespace detail

/// In-process token lock. Thread-safe.
///
/// Locks expire by the injected Clock, so tests can expire a lease by moving a ManualClock.
/// Waiters are woken by a condition variable on release/notify (striped: a signal may wake
/// waiters of other keys, which then re-check). Fence counters are kept per key for the life of
/// the object (a few dozen bytes per key ever locked), so fences never go backwards.
class MemoryTokenLock final : public TokenLock {
 public:
  explicit MemoryTokenLock(std::shared_ptr<const Clock> clock = system_clock());
  ~MemoryTokenLock() override;

  [[nodiscard]] std::optional<LockToken> try_acquire(std::string_view key,
                                                     std::chrono::milliseconds ttl) override;
  bool release(std::string_view key, std::string_view token) override;
  [[nodiscard]] bool renew(std::string_view key, std::string_view token,
                           std::chrono::milliseconds ttl) override;
  std::uint64_t bump_fence(std::string_view key) override;
  [[nodiscard]] std::unique_ptr<Subscription> subscribe(std::string_view key) override;
  void notify(std::string_view key) override;

  /// @return the current holder's token of `key`, if the lock is held and unexpired (for tests/tools).
  [[nodiscard]] std::optional<std::string> holder(std::string_view key) const;
  std::size_t tracked_keys() const;

 private:
  struct Stripe;
  class StripeSubscription;
  Stripe& stripe_for(std::string_view key) const noexcept;

  std::shared_ptr<const Clock> clock_;
  std::unique_ptr<Stripe[]> stripes_;
};

/// In-process entry store. Thread-safe.
///
/// Reads take no per-key lock and no exclusive lock: entries live in 16 shards, each guarded by a
/// detail::ReadMostlyMutex whose readers write only their own cache line; get() copies the entry
/// out under it. Writes take their shard exclusively.
///
/// Fences: a put with a lower fence than the key's last write or invalidation is refused.
/// invalidate() leaves a tombstone (key + fence, no value) to remember that fence.
///
/// Capacity (max_entries > 0): when an insert takes the store past max_entries, entries are
/// evicted one at a time from the inserting shard (or the next non-empty one): among up to 8
/// entries sampled from a random position, the one with the earliest hard expiry goes
/// (tombstones and expired entries first, as their expiry is earliest). This approximates
/// "evict what dies soonest" at O(1) cost, like Redis's sampled volatile-ttl policy. Evicting a
/// tombstone forgets its fence; an in-flight load older than that invalidation could then still
/// store, so size max_entries well above the working set if invalidations race loads.
template <class T>
class MemoryStore final : public Store<T> {
 public:
  using time_point = std::chrono::system_clock::time_point;
  static constexpr std::chrono::milliseconds kDefaultGrace{std::chrono::seconds{60}};

  /// @param max_entries capacity; 0 = unbounded.
  explicit MemoryStore(std::size_t max_entries = 0) : max_entries_(max_entries) {}

  std::optional<Entry<T>> get(std::string_view key, time_point now) override {
    const detail::PrehashedKey k{key, detail::PrehashedHash{}(key)};
    const Shard& s = shards_[shard_index(k.hash)];
    std::shared_lock lock(s.mu);
    auto it = s.map.find(k);
    if (it == s.map.end() || !it->second.entry || now >= it->second.entry->hard_expiry) {
      return std::nullopt;
    }
    return it->second.entry;
  }

  PutResult put(std::string_view key, const Entry<T>& entry, time_point /*now*/) override {
    std::size_t index = shard_index(key);
    Shard& s = shards_[index];
    bool inserted = false;
    {
      std::unique_lock lock(s.mu);
      auto it = s.map.find(key);
      if (it == s.map.end()) {
        it = s.map.emplace(std::string(key), Slot{}).first;
        inserted = true;
      } else if (entry.fence < it->second.fence) {
        return PutResult::stale_fence;
      }
      it->second.entry = entry;
      it->second.fence = entry.fence;
    }
    if (inserted && size_.fetch_add(1, std::memory_order_relaxed) + 1 > max_entries_ && max_entries_ > 0) {
      evict_one(index, key);
    }
    return PutResult::stored;
  }

  void invalidate(std::string_view key, std::uint64_t fence) override {
    std::size_t index = shard_index(key);
    Shard& s = shards_[index];
    bool inserted = false;
    {
      std::unique_lock lock(s.mu);
      auto it = s.map.find(key);
      if (it == s.map.end()) {
        it = s.map.emplace(std::string(key), Slot{}).first;
        inserted = true;
      }
      it->second.entry.reset();
      if (fence > it->second.fence) it->second.fence = fence;
    }
    if (inserted && size_.fetch_add(1, std::memory_order_relaxed) + 1 > max_entries_ && max_entries_ > 0) {
      evict_one(index, key);
    }
  }

  /// @return entries and tombstones held.
  [[nodiscard]] std::size_t size() const noexcept { return size_.load(std::memory_order_relaxed); }
  /// @return entries evicted for capacity so far.
  [[nodiscard]] std::uint64_t evictions() const noexcept {
    return evictions_.load(std::memory_order_relaxed);
  }

 private:
  static constexpr std::size_t kShards = 16;
  static constexpr std::size_t kSample = 8;

  struct Slot {
    std::optional<Entry<T>> entry;  // empty: tombstone
    std::uint64_t fence = 0;        // highest fence seen (write or invalidation)
  };
  struct alignas(detail::kCacheLine) Shard {
    mutable detail::ReadMostlyMutex mu;
    std::unordered_map<std::string, Slot, detail::PrehashedHash, detail::PrehashedEqual> map;
  };

  static std::size_t shard_index(std::size_t hash) noexcept {
    // Use high bits: the shard's map uses the low bits of the same hash for its buckets.
    return (hash >> 20) % kShards;
  }
  static std::size_t shard_index(std::string_view key) noexcept {
    return shard_index(detail::PrehashedHash{}(key));
  }

  // Evicts one entry other than `keep`, starting at shard `start`.
  void evict_one(std::size_t start, std::string_view keep) {
    thread_local std::minstd_rand rng{std::random_device{}()};
    for (std::size_t n = 0; n < kShards; ++n) {
      Shard& s = shards_[(start + n) % kShards];
      std::unique_lock lock(s.mu);
      if (s.map.empty() || (s.map.size() == 1 && s.map.begin()->first == keep)) continue;
      auto bucket = std::uniform_int_distribution<std::size_t>(0, s.map.bucket_count() - 1)(rng);
      auto victim = s.map.end();
      std::size_t seen = 0;
      // Walk buckets from a random one; take the earliest-dying of up to kSample entries.
      for (std::size_t b = 0; b < s.map.bucket_count() && seen < kSample; ++b) {
        std::size_t bi = (bucket + b) % s.map.bucket_count();
        for (auto it = s.map.begin(bi); it != s.map.end(bi) && seen < kSample; ++it) {
          if (it->first == keep) continue;
          ++seen;
          auto candidate = s.map.find(it->first);
          if (victim == s.map.end() || expiry(candidate->second) < expiry(victim->second)) victim = candidate;
        }
      }
      if (victim == s.map.end()) continue;
      s.map.erase(victim);
      size_.fetch_sub(1, std::memory_order_relaxed);
      evictions_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  static time_point expiry(const Slot& slot) noexcept {
    return slot.entry ? slot.entry->hard_expiry : time_point::min();
  }

  std::size_t max_entries_;
  std::array<Shard, kShards> shards_;
  std::atomic<std::size_t> size_{0};
  std::atomic<std::uint64_t> evictions_{0};
};

}  // namespace stampede
