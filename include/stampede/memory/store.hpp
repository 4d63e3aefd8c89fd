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

#include "stampede/detail/flat_table.hpp"
#include "stampede/detail/fork.hpp"
#include "stampede/detail/random.hpp"
#include "stampede/detail/read_mostly_mutex.hpp"
#include "stampede/detail/string_hash.hpp"
#include "stampede/store.hpp"

namespace stampede {

/// In-process entry store. Thread-safe.
///
/// Reads take no per-key lock and no exclusive lock: entries live in 16 shards, each a
/// detail::FlatTable guarded by a detail::ReadMostlyMutex whose readers write only their own cache
/// line; get() copies the entry out under it. Writes take their shard exclusively. A key is hashed
/// once per call (detail::StringHash): its top bits pick the shard, its low bits the table slot,
/// and the whole hash, remixed, its floor (below).
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
/// more frequent; use a store of the same backend as the lock. The floors (16 KiB per shard) are
/// allocated on the shard's first drop.
///
/// Memory: entries stay readable as stale (get() with a time before their expiry, which is what
/// OnWaitTimeout::serve_stale does) for `grace` past their hard expiry, then a sweep reclaims
/// them: every put looks at the next 8 slots of its shard's table for entries past expiry + grace,
/// and every 16th put also at 128 slots of a rotating other shard. The hit path never sweeps (it
/// writes nothing shared). Memory held is bounded by the entries written within the last ttl +
/// grace (plus one sweep round), not by the keys ever used; a shard's table shrinks once a sweep
/// round finds it less than 1/4 full.
///
/// Capacity (max_entries > 0): when an insert takes the store past max_entries, entries are
/// evicted one at a time from the inserting shard (or the next non-empty one): among up to 8
/// entries sampled from a random slot onwards, the one with the earliest hard expiry goes (expired
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
    const Entry<T>* e = s.table.find(k);
    if (e == nullptr || now >= e->hard_expiry) return std::nullopt;
    return *e;
  }

  /// Calls `fn` with the entry in place, under its shard's read lock (writers of the shard wait).
  bool visit(std::string_view key, time_point now, detail::FunctionRef<void(const Entry<T>&)> fn) override {
    const detail::PrehashedKey k{key, detail::StringHash{}(key)};
    const Shard& s = current().shards[shard_index(k.hash)];
    std::shared_lock lock(s.mu);
    const Entry<T>* e = s.table.find(k);
    if (e == nullptr || now >= e->hard_expiry) return false;
    fn(*e);
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
      sweep(st, s, now, kSweepSlots);
      Entry<T>* held = s.table.find(k);
      if (held == nullptr) {
        if (entry.fence <= floor_of(st, s, k.hash)) return PutResult::stale_fence;
        s.table.insert(k, entry);
        inserted = true;
      } else if (entry.fence < held->fence) {
        return PutResult::stale_fence;
      } else {
        *held = entry;
      }
    }
    raise_max_fence(entry.fence);
    if (inserted && st.size.fetch_add(1, std::memory_order_relaxed) + 1 > max_entries_ && max_entries_ > 0) {
      evict_one(st, index, k);
    }
    // Shards that nobody writes are swept too, a larger step every kShards-th put.
    const std::uint64_t n = st.puts.fetch_add(1, std::memory_order_relaxed);
    if (n % kShards == 0) {
      const std::size_t other = (n / kShards) % kShards;
      if (other != index) {
        Shard& o = st.shards[other];
        std::unique_lock lock(o.mu);
        sweep(st, o, now, kSweepSlots * kShards);
      }
    }
    return PutResult::stored;
  }

  /// Under the shard's lock: stores `entry` in place of the key's entry if that still has fence
  /// `expected` and entry.fence is not lower (an expired entry the sweep has not reclaimed counts).
  PutResult put_if_unchanged(std::string_view key, std::uint64_t expected, const Entry<T>& entry,
                             time_point now) override {
    (void)now;
    State& st = current();
    const detail::PrehashedKey k{key, detail::StringHash{}(key)};
    Shard& s = st.shards[shard_index(k.hash)];
    {
      std::unique_lock lock(s.mu);
      Entry<T>* held = s.table.find(k);
      if (held == nullptr || held->fence != expected || entry.fence < held->fence) {
        return PutResult::stale_fence;
      }
      *held = entry;
    }
    raise_max_fence(entry.fence);
    return PutResult::stored;
  }

  void invalidate(std::string_view key, std::uint64_t fence) override {
    State& st = current();
    const detail::PrehashedKey k{key, detail::StringHash{}(key)};
    Shard& s = st.shards[shard_index(k.hash)];
    bool erased = false;
    {
      std::unique_lock lock(s.mu);
      const Entry<T>* held = s.table.find(k);
      raise_floor(s, k.hash, held ? std::max(fence, held->fence) : fence);  // may throw: before the erase
      if (held != nullptr) erased = s.table.erase(k);
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
  [[nodiscard]] bool reads_locally() const noexcept override { return true; }

 private:
  static constexpr unsigned kShardBits = 4;
  static constexpr std::size_t kShards = std::size_t{1} << kShardBits;
  static constexpr std::size_t kSample = 8;
  static constexpr std::size_t kSweepSlots = 8;
  static constexpr unsigned kFloorBits = 11;
  static constexpr std::size_t kFloorSlots = std::size_t{1} << kFloorBits;
  // A sweep round that ends with fewer entries than 1/kShrinkRatio of the slots shrinks the table.
  static constexpr std::size_t kShrinkRatio = 4;

  struct alignas(detail::kCacheLine) Shard {
    mutable detail::ReadMostlyMutex mu;
    detail::FlatTable<Entry<T>> table;
    // Highest fence of a key dropped from each slot; null until the shard's first drop.
    std::unique_ptr<std::uint64_t[]> floors;
    std::size_t sweep_cursor = 0;  // next slot of `table` to sweep
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
    // The top bits: the shard's table takes its slot from the low bits of the same hash.
    return hash >> (64 - kShardBits);
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

  // Looks at the next `slots` slots of s.table (wrapping around) and drops the entries past hard
  // expiry + grace. Requires s.mu held exclusively.
  void sweep(State& st, Shard& s, time_point now, std::size_t slots) {
    const time_point cutoff = now - grace_;
    for (std::size_t n = 0; n < slots; ++n) {
      if (s.sweep_cursor >= s.table.capacity()) {
        s.sweep_cursor = 0;
        // A round is over: give back the slots of a table that emptied.
        if (s.table.size() * kShrinkRatio < s.table.capacity()) s.table.shrink_to_fit();
      }
      const std::size_t slot = s.sweep_cursor;
      const auto* item = s.table.item_at(slot);
      if (item == nullptr || item->value.hard_expiry > cutoff) {
        ++s.sweep_cursor;
        continue;
      }
      raise_floor(s, s.table.hash_at(slot), item->value.fence);
      // The erase may shift a later entry into this slot: the cursor stays to look at it next.
      s.table.erase_at(slot);
      st.size.fetch_sub(1, std::memory_order_relaxed);
    }
  }

  // Evicts one entry other than `keep`, starting at shard `start`.
  void evict_one(State& st, std::size_t start, const detail::PrehashedKey& keep) {
    std::minstd_rand& rng = detail::thread_rng();
    for (std::size_t n = 0; n < kShards; ++n) {
      Shard& s = st.shards[(start + n) % kShards];
      std::unique_lock lock(s.mu);
      if (s.table.size() == (s.table.find(keep) != nullptr ? 1 : 0)) continue;  // nothing but `keep`
      // Walk the slots from a random one; take the earliest-dying of up to kSample entries.
      const std::size_t slots = s.table.capacity();  // a power of two
      const std::size_t first = std::uniform_int_distribution<std::size_t>(0, slots - 1)(rng);
      std::size_t victim = slots;  // none yet
      std::size_t seen = 0;
      for (std::size_t i = 0; i < slots && seen < kSample; ++i) {
        const std::size_t slot = (first + i) & (slots - 1);
        const auto* item = s.table.item_at(slot);
        if (item == nullptr || item->key == keep.key) continue;
        ++seen;
        if (victim == slots || item->value.hard_expiry < s.table.item_at(victim)->value.hard_expiry) {
          victim = slot;
        }
      }
      raise_floor(s, s.table.hash_at(victim), s.table.item_at(victim)->value.fence);
      s.table.erase_at(victim);
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
