// stampede/redis/near_cache.hpp: NearCache<T>, an in-process copy of the Redis backend's entries
// kept coherent by Redis's own invalidation messages (server-assisted client-side caching).
//
// Off by default. With it on, a hit is an in-process lookup (no Redis round trip); every write to
// a cached key, by any client, drops the key from every process's near cache. One dedicated
// connection per near cache runs `CLIENT TRACKING on REDIRECT <own id> BCAST PREFIX {prefix}{`
// and SUBSCRIBEs `__redis__:invalidate` (RESP2). docs/design.md, "Near cache", has the protocol.
//
//   stampede::redis::BackendOptions o;
//   o.near_cache = {.enabled = true, .max_entries = 50'000, .max_age = std::chrono::seconds(30)};
//   stampede::Cache<Item> cache({.ttl = 30s}, stampede::redis::backend<Item>(client, o));
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>

#include "stampede/clock.hpp"
#include "stampede/detail/fork.hpp"
#include "stampede/detail/random.hpp"
#include "stampede/detail/read_mostly_mutex.hpp"
#include "stampede/detail/string_hash.hpp"
#include "stampede/detail/striped_counters.hpp"
#include "stampede/events.hpp"
#include "stampede/redis/client.hpp"
#include "stampede/redis/export.hpp"
#include "stampede/store.hpp"

namespace stampede::redis {

/// Settings of the near cache of a Redis backend (BackendOptions::near_cache). Plain values.
struct NearCacheOptions {
  /// Off by default: every read is one Redis round trip, as without a near cache.
  bool enabled = false;
  /// Most entries held in this process (per backend). Must be >= 1. When an insert goes past it,
  /// one entry is evicted (sampled: entries no longer servable first, then the oldest copy).
  std::size_t max_entries = 10'000;
  /// Longest time a local copy is served, whatever Redis says: the bound on staleness if an
  /// invalidation is lost without the connection being noticed as lost. Must be > 0.
  std::chrono::milliseconds max_age{std::chrono::seconds{60}};
  /// When Redis cannot be read (backend_error), serve a local copy still within its hard expiry
  /// and max_age, even one kept from before the invalidation connection was lost, instead of
  /// throwing. Set it to false with BackendFailure::fail_closed to get backend_error instead.
  bool serve_when_redis_down = true;
  /// How often the tracking thread checks that Redis still serves the database its copies came
  /// from: it reads the marker key `{prefix}db-marker` (a random token, written once if absent) and
  /// drops every copy when the token changed. A SWAPDB announces no invalidation; this bounds how
  /// long a copy from the swapped-out database is served (docs/operations.md). One GET per
  /// interval, on a connection of the tracker's own. Must be >= 0; 0 = never check (a SWAPDB is
  /// then noticed only through max_age).
  std::chrono::milliseconds db_check_interval{std::chrono::seconds{1}};
  /// Receives EventType::near_cache_flushed (on the tracking thread); empty = none. Must not throw
  /// (an exception is swallowed) and must not block.
  EventHook on_event;
  /// The clock of max_age; null = monotonic_clock() (a wall clock step changes no lifetime).
  std::shared_ptr<const Clock> clock;
};

/// Throws std::invalid_argument naming the first field of `options` that makes no sense
/// (max_entries == 0, max_age <= 0, db_check_interval < 0), also when the near cache is off.
/// @param options the options.
/// @throws std::invalid_argument.
STAMPEDE_REDIS_EXPORT void validate(const NearCacheOptions& options);

namespace detail {

/// What a NearTracker tells its near cache. Called on the tracker's thread; must not throw.
class NearTrackerSink {
 public:
  virtual ~NearTrackerSink() = default;
  /// Tracking is established: invalidations of every write from now on will arrive.
  virtual void tracking_established() noexcept = 0;
  /// The connection was lost (or could not be set up): invalidations may have been missed.
  /// @param why a message for the event hook.
  virtual void tracking_lost(std::string_view why) noexcept = 0;
  /// Redis invalidated `key` (the cache key, without prefix and hash tag).
  virtual void invalidated(std::string_view key) noexcept = 0;
  /// Every key may have changed: Redis announced a FLUSHALL or FLUSHDB, or the database marker
  /// changed (a SWAPDB). Tracking goes on.
  /// @param why a message for the event hook.
  virtual void invalidated_all(std::string_view why) noexcept = 0;
};

/// The tracking connection of a near cache and its reader thread: connects, runs
/// `CLIENT TRACKING on REDIRECT <own id> BCAST PREFIX {prefix}{` and `SUBSCRIBE __redis__:invalidate`
/// on one connection (so tracking lives exactly as long as the connection that receives its
/// messages), then forwards every invalidation to the sink. A lost connection (EOF, I/O error, a
/// keepalive PING unanswered as ClientOptions says) is reported and reconnected with backoff
/// (50 ms doubling to 1 s).
///
/// The database check (db_check_interval > 0): before tracking is reported established, a second
/// connection of its own reads the token of `{prefix}db-marker` (setting it first if absent);
/// every db_check_interval it reads it again, and if it changed (a SWAPDB: Redis announces none)
/// it takes the new token and reports invalidated_all(). A check that fails (I/O error, timeout)
/// counts as a lost connection.
///
/// Thread-safe. Lifetime: the destructor stops and joins the thread (up to the client's
/// connect_timeout + command_timeout while it connects); the sink must outlive it.
/// fork(): a child calls abandon_after_fork() instead of the destructor.
class STAMPEDE_REDIS_EXPORT NearTracker {
 public:
  /// Starts the thread, which connects at once.
  /// @param db_check_interval see NearCacheOptions::db_check_interval (0 = no check).
  /// @throws backend_error if the wake-up pipe cannot be made.
  NearTracker(std::shared_ptr<Client> client, const std::string& prefix, NearTrackerSink& sink,
              std::chrono::milliseconds db_check_interval = {});
  ~NearTracker();
  NearTracker(const NearTracker&) = delete;
  NearTracker& operator=(const NearTracker&) = delete;

  /// In a fork()ed child, instead of the destructor: closes the child's copies of the sockets it
  /// can identify and keeps the rest, never destroyed. Never blocks.
  void abandon_after_fork() noexcept;

 private:
  struct Impl;
  Impl* impl_;  // owned; abandoned in a fork()ed child
};

}  // namespace detail

/// The in-process copy of a Redis store's entries. Thread-safe. Used by RedisStore<T, C> when
/// NearCacheOptions::enabled; usable on its own in front of any reader of the same keys.
///
/// Hit path: the key's shard (16, each a detail::ReadMostlyMutex held shared for one lookup and
/// one copy), the entry's tracking epoch compared with the current one (one atomic load), its hard
/// expiry and its max_age deadline (one read of the clock): no Redis round trip, no per-key lock,
/// no exclusive lock, no shared write.
///
/// Coherence. An entry is served only while tracking is established, and only if it was inserted
/// in the current tracking epoch. Every invalidation message bumps the invalidation sequence of
/// the key's slot (16 shards x 64 slots) and erases the key, both under the shard's exclusive lock.
/// A read that misses captures (epoch, slot sequence) *before* asking Redis (Ticket); insert()
/// stores the reply only if, under the shard's exclusive lock, both are unchanged: an
/// invalidation that arrived while the read was in flight keeps the read's result out (docs/
/// design.md, "the in-flight read race"). An entry is never replaced by one with a lower fence.
///
/// A change of database that Redis does not announce (SWAPDB) is noticed by the tracker's
/// database check (NearCacheOptions::db_check_interval), which drops every entry and starts a new
/// epoch, as a FLUSHALL does.
///
/// Losing the tracking connection ends the epoch: every entry stops being served at once (one
/// atomic store, the "flush"), nothing is inserted until tracking is back, and when it is the
/// entries are dropped before the new epoch starts. Until then they are kept for
/// NearCacheOptions::serve_when_redis_down (fallback()).
///
/// fork(): a child gets an empty near cache, with a tracking connection and thread of its own on
/// first use; the parent's state is abandoned, never destroyed. Lifetime: no call may be in
/// progress when it is destroyed; the destructor joins the tracking thread.
template <class T>
class NearCache {
 public:
  using time_point = std::chrono::system_clock::time_point;

  /// What a missed lookup saw, to pass to insert() after reading Redis.
  struct Ticket {
    std::size_t hash = 0;
    std::uint64_t epoch = 0;
    std::uint64_t sequence = 0;
  };

  /// Starts tracking (asynchronously: until it is established every lookup misses).
  /// @param client the pool whose endpoint the tracking connection goes to.
  /// @param prefix the store's key prefix.
  /// @param options see NearCacheOptions (validated here, `enabled` is not looked at).
  /// @throws std::invalid_argument for bad options or a null client; backend_error as
  ///         NearTracker.
  NearCache(std::shared_ptr<Client> client, std::string prefix, NearCacheOptions options)
      : client_(std::move(client)), prefix_(std::move(prefix)), options_(std::move(options)) {
    validate(options_);
    if (!client_) throw std::invalid_argument("stampede::redis::NearCache: client must not be null");
    if (!options_.clock) options_.clock = monotonic_clock();
    state_.store(new State(*this), std::memory_order_release);
  }
  ~NearCache() { delete state_.load(std::memory_order_acquire); }
  NearCache(const NearCache&) = delete;
  NearCache& operator=(const NearCache&) = delete;

  /// @param key the cache key.
  /// @param now the caller's time, judged against the entry's hard expiry.
  /// @param ticket filled on a miss, for insert().
  /// @return the entry if it is servable now; counts a near hit or miss.
  std::optional<Entry<T>> lookup(std::string_view key, time_point now, Ticket& ticket) {
    State& st = current();
    const std::size_t hash = stampede::detail::StringHash{}(key);
    Shard& s = st.shards[shard_index(hash)];
    {
      std::shared_lock lock(s.mu);
      auto it = s.map.find(stampede::detail::PrehashedKey{key, hash});
      if (it != s.map.end() && it->second.epoch == st.epoch.load(std::memory_order_acquire) &&
          now < it->second.entry.hard_expiry && options_.clock->now() < it->second.deadline) {
        counters_.add(kHits);
        return it->second.entry;
      }
    }
    counters_.add(kMisses);
    ticket.hash = hash;
    // Captured before the caller asks Redis (see the class comment).
    ticket.epoch = st.epoch.load(std::memory_order_acquire);
    ticket.sequence = s.sequence[slot_index(hash)].load(std::memory_order_acquire);
    return std::nullopt;
  }

  /// Stores what Redis answered to the read that `ticket` was captured for, unless an
  /// invalidation of its slot, or the end of the tracking epoch, happened since, or the entry held
  /// carries a higher fence.
  /// @return true if stored.
  bool insert(std::string_view key, const Entry<T>& entry, const Ticket& ticket) {
    if (reply_hook_) reply_hook_(key);
    State& st = current();
    if (!established(ticket.epoch)) return false;
    const std::size_t index = shard_index(ticket.hash);
    Shard& s = st.shards[index];
    const time_point deadline = options_.clock->now() + options_.max_age;
    bool added = false;
    {
      std::unique_lock lock(s.mu);
      if (st.epoch.load(std::memory_order_acquire) != ticket.epoch ||
          s.sequence[slot_index(ticket.hash)].load(std::memory_order_relaxed) != ticket.sequence) {
        return false;
      }
      auto it = s.map.find(stampede::detail::PrehashedKey{key, ticket.hash});
      if (it == s.map.end()) {
        s.map.emplace(std::string(key), Held{entry, ticket.epoch, deadline});
        added = true;
      } else if (it->second.epoch == ticket.epoch && entry.fence < it->second.entry.fence) {
        return false;
      } else {
        it->second = Held{entry, ticket.epoch, deadline};
      }
    }
    if (added && st.size.fetch_add(1, std::memory_order_relaxed) + 1 > options_.max_entries) {
      evict_one(st, index, key);
    }
    return true;
  }

  /// A local copy of `key` for when Redis cannot be read: any entry held, of this tracking epoch
  /// or the last one, within its hard expiry and max_age. Counts a near hit if found.
  /// @return the entry, or std::nullopt (also when serve_when_redis_down is off).
  std::optional<Entry<T>> fallback(std::string_view key, time_point now) {
    if (!options_.serve_when_redis_down) return std::nullopt;
    State& st = current();
    const std::size_t hash = stampede::detail::StringHash{}(key);
    Shard& s = st.shards[shard_index(hash)];
    std::shared_lock lock(s.mu);
    auto it = s.map.find(stampede::detail::PrehashedKey{key, hash});
    if (it == s.map.end() || now >= it->second.entry.hard_expiry ||
        options_.clock->now() >= it->second.deadline) {
      return std::nullopt;
    }
    counters_.add(kHits);
    return it->second.entry;
  }

  /// Drops `key` after this process wrote it (put, invalidate): a read in flight since before
  /// the write cannot store what it read.
  void forget(std::string_view key) { current().drop(key); }

  /// @return true while tracking is established (entries can be served and inserted).
  [[nodiscard]] bool tracking() const { return established(current().epoch.load(std::memory_order_acquire)); }

  /// Waits until tracking is established (tests, demos, warm-up).
  /// @return tracking() at the end.
  bool wait_for_tracking(std::chrono::steady_clock::time_point deadline) const {
    while (!tracking()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }

  /// @return entries held (including ones no longer servable, until evicted or dropped).
  [[nodiscard]] std::size_t size() const { return current().size.load(std::memory_order_relaxed); }

  /// Adds near_hits, near_misses, near_invalidations and near_flushes.
  void add_counters(BackendCounters& counters) const {
    counters.near_hits += counters_.sum(kHits);
    counters.near_misses += counters_.sum(kMisses);
    counters.near_invalidations += invalidations_.load(std::memory_order_relaxed);
    counters.near_flushes += flushes_.load(std::memory_order_relaxed);
  }

  /// A seam for tests: `hook(key)` runs in insert() between Redis's reply and the check that
  /// decides whether to store it. Set it before any concurrent use; empty = none.
  void set_reply_hook_for_testing(std::function<void(std::string_view)> hook) {
    reply_hook_ = std::move(hook);
  }

 private:
  static constexpr std::size_t kShards = 16;
  static constexpr std::size_t kSlots = 64;
  static constexpr std::size_t kSample = 8;
  static constexpr std::size_t kHits = 0;
  static constexpr std::size_t kMisses = 1;

  struct Held {
    Entry<T> entry;
    std::uint64_t epoch;  // the tracking epoch it was inserted in
    time_point deadline;  // inserted + max_age, on options_.clock
  };
  struct alignas(stampede::detail::kCacheLine) Shard {
    mutable stampede::detail::ReadMostlyMutex mu;
    std::unordered_map<std::string, Held, stampede::detail::StringHash, stampede::detail::StringEqual> map;
    // Invalidation sequence per slot of keys; written under mu held exclusively, read without it
    // by lookup() (the ticket) and under it by insert().
    std::array<std::atomic<std::uint64_t>, kSlots> sequence{};
  };

  // Epochs: odd = tracking established, even = not. Entries carry the (odd) epoch they were
  // inserted in.
  static bool established(std::uint64_t epoch) noexcept { return (epoch & 1U) != 0; }

  struct State final : detail::NearTrackerSink {
    explicit State(NearCache& cache) : owner(cache), generation(stampede::detail::fork_generation()) {
      tracker = std::make_unique<detail::NearTracker>(cache.client_, cache.prefix_, *this,
                                                      cache.options_.db_check_interval);
    }
    ~State() override { tracker.reset(); }  // joins the thread before the shards go

    void tracking_established() noexcept override {
      // Entries of the last epoch were kept for fallback(); a new epoch starts empty.
      clear();
      epoch.fetch_add(1, std::memory_order_acq_rel);  // even -> odd
    }
    void tracking_lost(std::string_view why) noexcept override {
      std::uint64_t e = epoch.load(std::memory_order_acquire);
      if (!established(e)) return;  // a failed reconnection: nothing was served since the last loss
      // odd -> even: nothing is served nor inserted from now on (an insert holding a ticket of the
      // ended epoch checks it under its shard lock, and its entry would carry the ended epoch).
      epoch.store(e + 1, std::memory_order_release);
      owner.flushed(why);
    }
    void invalidated(std::string_view key) noexcept override {
      owner.invalidations_.fetch_add(1, std::memory_order_relaxed);
      drop(key);
    }
    void invalidated_all(std::string_view why) noexcept override {
      std::uint64_t e = epoch.load(std::memory_order_acquire);
      if (established(e)) {
        // A new epoch at once: reads in flight cannot store, entries are not served.
        epoch.store(e + 2, std::memory_order_release);
      }
      clear();
      owner.flushed(why);
    }

    void drop(std::string_view key) noexcept {
      const std::size_t hash = stampede::detail::StringHash{}(key);
      Shard& s = shards[shard_index(hash)];
      bool erased = false;
      {
        std::unique_lock lock(s.mu);
        std::atomic<std::uint64_t>& seq = s.sequence[slot_index(hash)];
        seq.store(seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
        auto it = s.map.find(stampede::detail::PrehashedKey{key, hash});
        if (it != s.map.end()) {
          s.map.erase(it);
          erased = true;
        }
      }
      if (erased) size.fetch_sub(1, std::memory_order_relaxed);
    }
    void clear() noexcept {
      for (Shard& s : shards) {
        std::size_t n = 0;
        {
          std::unique_lock lock(s.mu);
          n = s.map.size();
          s.map.clear();
        }
        size.fetch_sub(n, std::memory_order_relaxed);
      }
    }

    NearCache& owner;
    const std::uint64_t generation;
    std::array<Shard, kShards> shards;
    alignas(stampede::detail::kCacheLine) std::atomic<std::uint64_t> epoch{0};
    std::atomic<std::size_t> size{0};
    std::unique_ptr<detail::NearTracker> tracker;  // last: started once the rest exists
  };

  static std::size_t shard_index(std::size_t hash) noexcept { return (hash >> 20) % kShards; }
  static std::size_t slot_index(std::size_t hash) noexcept { return (hash >> 8) % kSlots; }

  State& current() const {
    State* st = state_.load(std::memory_order_acquire);
    if (st->generation != stampede::detail::fork_generation()) [[unlikely]] {
      st = replace_after_fork(st);
    }
    return *st;
  }
  // In a fork()ed child: an empty state with a tracker of its own; the parent's is abandoned.
  State* replace_after_fork(State* old) const {
    auto fresh = std::make_unique<State>(const_cast<NearCache&>(*this));
    if (state_.compare_exchange_strong(old, fresh.get(), std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
      old->tracker->abandon_after_fork();  // the State is kept, never destroyed, and the tracker in it
      stampede::detail::keep_abandoned(old);
      return fresh.release();
    }
    return old;  // another thread of the child replaced it first
  }

  void flushed(std::string_view why) noexcept {
    flushes_.fetch_add(1, std::memory_order_relaxed);
    if (!options_.on_event) return;
    try {
      options_.on_event(Event{EventType::near_cache_flushed, {}, why, {}});
    } catch (...) {
      // A hook must not throw; if it does, nothing else changes.
    }
  }

  // Evicts one entry other than `keep`, starting at shard `start`: among up to kSample entries
  // from a random bucket, one of an ended epoch if any, else the one with the earliest deadline.
  void evict_one(State& st, std::size_t start, std::string_view keep) {
    const std::uint64_t current_epoch = st.epoch.load(std::memory_order_acquire);
    std::minstd_rand& rng = stampede::detail::thread_rng();
    for (std::size_t n = 0; n < kShards; ++n) {
      Shard& s = st.shards[(start + n) % kShards];
      std::unique_lock lock(s.mu);
      if (s.map.empty() || (s.map.size() == 1 && s.map.begin()->first == keep)) continue;
      const std::size_t buckets = s.map.bucket_count();
      const std::size_t first = std::uniform_int_distribution<std::size_t>(0, buckets - 1)(rng);
      auto victim = s.map.end();
      std::size_t seen = 0;
      auto older = [&](const Held& a, const Held& b) {
        const bool a_dead = a.epoch != current_epoch, b_dead = b.epoch != current_epoch;
        if (a_dead != b_dead) return a_dead;
        return a.deadline < b.deadline;
      };
      for (std::size_t b = 0; b < buckets && seen < kSample; ++b) {
        const std::size_t bi = (first + b) % buckets;
        for (auto it = s.map.begin(bi); it != s.map.end(bi) && seen < kSample; ++it) {
          if (it->first == keep) continue;
          ++seen;
          if (victim == s.map.end() || older(it->second, victim->second)) victim = s.map.find(it->first);
        }
      }
      if (victim == s.map.end()) continue;
      s.map.erase(victim);
      st.size.fetch_sub(1, std::memory_order_relaxed);
      return;
    }
  }

  std::shared_ptr<Client> client_;
  std::string prefix_;
  NearCacheOptions options_;
  std::function<void(std::string_view)> reply_hook_;
  mutable stampede::detail::StripedCounters<2> counters_;
  std::atomic<std::uint64_t> invalidations_{0};
  std::atomic<std::uint64_t> flushes_{0};
  mutable std::atomic<State*> state_{nullptr};
};

}  // namespace stampede::redis
