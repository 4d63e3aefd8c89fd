// stampede/memory/store.hpp: MemoryStore<T>, the entry store of the embedded in-process backend.
//
// Entries live in this process, judged by the clock the caller passes in `now` (the embedded
// backend's is monotonic: a step of the wall clock neither keeps entries past their TTL nor
// expires them early). A Cache built without a backend uses it (with MemoryTokenLock, see
// stampede/memory/backend.hpp); it is also usable on its own.
//
//   stampede::MemoryStore<int> store(/*max_entries=*/10'000);
//   store.put("k", {.value = 1, .soft_expiry = t + 10s, .hard_expiry = t + 10s, .fence = 7}, t);
//   if (auto e = store.get("k", t)) use(e->value);
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>

#include "stampede/detail/fork.hpp"
#include "stampede/detail/random.hpp"
#include "stampede/detail/read_mostly_mutex.hpp"
#include "stampede/detail/string_hash.hpp"
#include "stampede/store.hpp"

namespace stampede {

/// In-process entry store. Thread-safe.
///
/// Reads take no per-key lock and no exclusive lock: entries live in 16 shards, each guarded by a
/// detail::ReadMostlyMutex whose readers write only their own cache line; get() copies the entry
/// out under it. Writes take their shard exclusively.
///
/// Fencing: a put with a lower fence than the key's stored entry is refused. A key that is absent
/// may have been dropped (by invalidate(), by eviction, by the sweep of expired entries): each
/// shard keeps a table of 2048 "floors", indexed by a hash of the key, holding the highest fence of
/// every key dropped from that slot; a put to an absent key is refused unless its fence is above
/// its slot's floor. Dropping a key never lets a lower fence win. The price is a false refusal: a
/// write to an absent key whose fence was handed out before the drop of *another* key of the same
/// slot is refused too (the caller still gets its value; it is just not cached, and counted in
/// stale_writes_rejected). With fences from one counter across keys (MemoryTokenLock), only a
/// write whose fence predates the drop can be refused, i.e. a load that was in flight while a key
/// of its slot was dropped: about (keys dropped during one load) / 32768 of loads. Paired with a
/// lock whose fences are counted per key (e.g. Redis), refusals of keys new to the store are far
/// more frequent; use a store of the same backend as the lock. The table (16 KiB per shard) is
/// allocated on the shard's first drop.
///
/// Memory: entries stay readable as stale (get() with a time before their expiry, which is what
/// OnWaitTimeout::serve_stale does) for `grace` past their hard expiry, then a sweep reclaims
/// them: every put looks at 8 hash buckets of its shard for entries past expiry + grace, and every
/// 16th put also at 128 buckets of a rotating other shard. The hit path never sweeps (it writes
/// nothing shared). Memory held is bounded by the entries written within the last ttl + grace
/// (plus one sweep round), not by the keys ever used; a shard's hash table shrinks once a sweep
/// round finds it mostly empty.
///
/// Capacity (max_entries > 0): when an insert takes the store past max_entries, entries are
/// evicted one at a time from the inserting shard (or the next non-empty one): among up to 8
/// entries sampled from a random position, the one with the earliest hard expiry goes (expired
/// entries first, as their expiry is earliest). This approximates "evict what dies soonest" at
/// O(1) cost, like Redis's sampled volatile-ttl policy. An evicted key's fence goes to its floor.
///
/// fork(): a child gets an empty store (the parent's other threads may have been inside a write,
/// holding a shard's lock, when it forked). Every floor of the child's store starts at the highest
/// fence the parent's store had seen, so a write of a load that was in flight at the fork is
/// refused; loads started in the child get higher fences from the lock. The parent's state is
/// abandoned in the child, never destroyed. The hit path checks for a fork with one relaxed load
/// and a compare.
///
/// Lifetime: the usual; no call may be in progress when the store is destroyed.
template <class T>
class MemoryStore final : public Store<T> {
 public:
  using time_point = std::chrono::system_clock::time_point;
  /// How long past its hard expiry an entry stays servable as stale, like the Redis store's grace.
  static constexpr std::chrono::milliseconds kDefaultGrace{std::chrono::seconds{60}};

  /// @param max_entries capacity; 0 = unbounded.
  /// @param grace how long past its hard expiry an entry is kept for OnWaitTimeout::serve_stale
  ///        before a sweep may reclaim it. >= 0.
  /// @throws std::invalid_argument for a negative grace.
  explicit MemoryStore(std::size_t max_entries = 0, std::chrono::milliseconds grace = kDefaultGrace)
      : max_entries_(max_entries),
        grace_(check_grace(grace)),
        state_(new State(detail::fork_generation(), 0)) {}
  ~MemoryStore() override { delete state_.load(std::memory_order_acquire); }
  MemoryStore(const MemoryStore&) = delete;
  MemoryStore& operator=(const MemoryStore&) = delete;

  std::optional<Entry<T>> get(std::string_view key, time_point now) override {
    const detail::PrehashedKey k{key, detail::StringHash{}(key)};
    const Shard& s = current().shards[shard_index(k.hash)];
    std::shared_lock lock(s.mu);
    auto it = s.map.find(k);
    if (it == s.map.end() || now >= it->second.hard_expiry) return std::nullopt;
    return it->second;
  }

  /// Calls `fn` with the entry in place, under its shard's read lock (writers of the shard wait).
  bool visit(std::string_view key, time_point now, detail::FunctionRef<void(const Entry<T>&)> fn) override {
    const detail::PrehashedKey k{key, detail::StringHash{}(key)};
    const Shard& s = current().shards[shard_index(k.hash)];
    std::shared_lock lock(s.mu);
    auto it = s.map.find(k);
    if (it == s.map.end() || now >= it->second.hard_expiry) return false;
    fn(it->second);
    return true;
  }

  PutResult put(std::string_view key, const Entry<T>& entry, time_point now) override {
    State& st = current();
    const detail::PrehashedKey k{key, detail::StringHash{}(key)};
    const std::size_t index = shard_index(k.hash);
    Shard& s = st.shards[index];
    bool inserted = false;
    {
      std::unique_lock lock(s.mu);
      sweep(st, s, now, kSweepBuckets);
      auto it = s.map.find(k);
      if (it == s.map.end()) {
        if (entry.fence <= floor_of(st, s, k.hash)) return PutResult::stale_fence;
        s.map.emplace(std::string(key), entry);
        inserted = true;
      } else if (entry.fence < it->second.fence) {
        return PutResult::stale_fence;
      } else {
        it->second = entry;
      }
    }
    raise_max_fence(entry.fence);
    if (inserted && st.size.fetch_add(1, std::memory_order_relaxed) + 1 > max_entries_ && max_entries_ > 0) {
      evict_one(st, index, key);
    }
    // Shards that nobody writes are swept too, a larger step every kShards-th put.
    const std::uint64_t n = st.puts.fetch_add(1, std::memory_order_relaxed);
    if (n % kShards == 0) {
      const std::size_t other = (n / kShards) % kShards;
      if (other != index) {
        Shard& o = st.shards[other];
        std::unique_lock lock(o.mu);
        sweep(st, o, now, kSweepBuckets * kShards);
      }
    }
    return PutResult::stored;
  }

  void invalidate(std::string_view key, std::uint64_t fence) override {
    State& st = current();
    const detail::PrehashedKey k{key, detail::StringHash{}(key)};
    Shard& s = st.shards[shard_index(k.hash)];
    bool erased = false;
    {
      std::unique_lock lock(s.mu);
      auto it = s.map.find(k);
      std::uint64_t floor = fence;
      if (it != s.map.end()) floor = std::max(floor, it->second.fence);
      raise_floor(s, k.hash, floor);  // before the erase: if it throws, nothing changed
      if (it != s.map.end()) {
        s.map.erase(it);
        erased = true;
      }
    }
    if (erased) st.size.fetch_sub(1, std::memory_order_relaxed);
    raise_max_fence(fence);
  }

  /// @return entries held, including expired ones not yet reclaimed.
  [[nodiscard]] std::size_t size() const { return current().size.load(std::memory_order_relaxed); }
  /// @return entries evicted for capacity so far.
  [[nodiscard]] std::uint64_t evictions() const noexcept {
    return evictions_.load(std::memory_order_relaxed);
  }

  /// Adds evictions().
  void add_counters(BackendCounters& counters) const override { counters.evictions += evictions(); }

 private:
  static constexpr std::size_t kShards = 16;
  static constexpr std::size_t kSample = 8;
  static constexpr std::size_t kSweepBuckets = 8;
  static constexpr unsigned kFloorBits = 11;
  static constexpr std::size_t kFloorSlots = std::size_t{1} << kFloorBits;
  // A sweep round that ends with fewer entries than 1/kShrinkRatio of the buckets shrinks the table.
  static constexpr std::size_t kShrinkRatio = 4;
  static constexpr std::size_t kMinBuckets = 64;

  struct alignas(detail::kCacheLine) Shard {
    mutable detail::ReadMostlyMutex mu;
    std::unordered_map<std::string, Entry<T>, detail::StringHash, detail::StringEqual> map;
    // Highest fence of a key dropped from each slot; null until the shard's first drop.
    std::unique_ptr<std::uint64_t[]> floors;
    std::size_t sweep_cursor = 0;  // next bucket to sweep
  };
  struct State {
    State(std::uint64_t gen, std::uint64_t floor) : generation(gen), base_floor(floor) {}
    const std::uint64_t generation;  // detail::fork_generation() when built
    const std::uint64_t base_floor;  // the floor of every slot (a fork()ed child's start)
    std::array<Shard, kShards> shards;
    std::atomic<std::size_t> size{0};
    std::atomic<std::uint64_t> puts{0};
  };

  static std::chrono::milliseconds check_grace(std::chrono::milliseconds grace) {
    if (grace.count() < 0) throw std::invalid_argument("stampede::MemoryStore: grace must be >= 0");
    return grace;
  }
  static std::size_t shard_index(std::size_t hash) noexcept {
    // Use high bits: the shard's map uses the low bits of the same hash for its buckets.
    return (hash >> 20) % kShards;
  }
  static std::size_t floor_index(std::size_t hash) noexcept {
    // Fibonacci hashing: the top bits of the product depend on every bit of the hash.
    return static_cast<std::size_t>((static_cast<std::uint64_t>(hash) * 0x9E3779B97F4A7C15ULL) >>
                                    (64 - kFloorBits));
  }

  State& current() const {
    State* st = state_.load(std::memory_order_acquire);
    if (st->generation != detail::fork_generation()) [[unlikely]] {
      st = replace_after_fork(st);
    }
    return *st;
  }
  // In a fork()ed child: an empty state whose floors cover every fence the parent's store saw.
  State* replace_after_fork(State* old) const {
    auto* fresh = new State(detail::fork_generation(),
                            std::max(old->base_floor, max_fence_.load(std::memory_order_relaxed)));
    if (state_.compare_exchange_strong(old, fresh, std::memory_order_acq_rel, std::memory_order_acquire)) {
      detail::keep_abandoned(old);
      return fresh;
    }
    delete fresh;  // another thread of the child replaced it first: `old` is now its state
    return old;
  }

  static std::uint64_t floor_of(const State& st, const Shard& s, std::size_t hash) noexcept {
    const std::uint64_t slot = s.floors ? s.floors[floor_index(hash)] : 0;
    return std::max(st.base_floor, slot);
  }
  static void raise_floor(Shard& s, std::size_t hash, std::uint64_t fence) {
    if (!s.floors) s.floors = std::make_unique<std::uint64_t[]>(kFloorSlots);  // zeroed
    std::uint64_t& floor = s.floors[floor_index(hash)];
    if (fence > floor) floor = fence;
  }
  void raise_max_fence(std::uint64_t fence) noexcept {
    std::uint64_t seen = max_fence_.load(std::memory_order_relaxed);
    while (fence > seen && !max_fence_.compare_exchange_weak(seen, fence, std::memory_order_relaxed)) {
    }
  }

  // Drops the entries of the next `buckets` buckets of `s` that are past hard expiry + grace.
  // Requires s.mu held exclusively.
  void sweep(State& st, Shard& s, time_point now, std::size_t buckets) {
    const time_point cutoff = now - grace_;
    for (std::size_t b = 0; b < buckets; ++b) {
      if (s.sweep_cursor >= s.map.bucket_count()) {
        s.sweep_cursor = 0;
        // A round is over: give back the buckets of a table that emptied (rehash(0) shrinks it).
        if (s.map.bucket_count() > kMinBuckets && s.map.size() * kShrinkRatio < s.map.bucket_count()) {
          s.map.rehash(0);
        }
      }
      const std::size_t bucket = s.sweep_cursor++;
      for (auto it = s.map.begin(bucket); it != s.map.end(bucket);) {
        if (it->second.hard_expiry > cutoff) {
          ++it;
          continue;
        }
        const std::size_t hash = detail::StringHash{}(it->first);
        raise_floor(s, hash, it->second.fence);
        auto victim = s.map.find(detail::PrehashedKey{it->first, hash});
        ++it;  // stays valid: an erase invalidates only iterators to the erased element
        s.map.erase(victim);
        st.size.fetch_sub(1, std::memory_order_relaxed);
      }
    }
  }

  // Evicts one entry other than `keep`, starting at shard `start`.
  void evict_one(State& st, std::size_t start, std::string_view keep) {
    std::minstd_rand& rng = detail::thread_rng();
    for (std::size_t n = 0; n < kShards; ++n) {
      Shard& s = st.shards[(start + n) % kShards];
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
          if (victim == s.map.end() || candidate->second.hard_expiry < victim->second.hard_expiry) {
            victim = candidate;
          }
        }
      }
      if (victim == s.map.end()) continue;
      raise_floor(s, detail::StringHash{}(victim->first), victim->second.fence);
      s.map.erase(victim);
      st.size.fetch_sub(1, std::memory_order_relaxed);
      evictions_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }

  const std::size_t max_entries_;
  const std::chrono::milliseconds grace_;
  mutable std::atomic<State*> state_;
  // Highest fence this store accepted or was invalidated with, in any process generation: the
  // floor of a fork()ed child's fresh state.
  std::atomic<std::uint64_t> max_fence_{0};
  std::atomic<std::uint64_t> evictions_{0};
};

}  // namespace stampede
