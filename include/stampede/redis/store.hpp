// stampede/redis/store.hpp: RedisStore<T, C>, cache entries of any T in Redis: a codec in front
// of RedisBytesStore.
//
// The codec (JsonCodec<T> by default, StringCodec for bytes, or one of the application's)
// turns values into the bytes RedisBytesStore keeps; nothing else of the wire format is here.
//
//   auto client = stampede::redis::Client::connect("redis://127.0.0.1:6379");
//   stampede::redis::RedisStore<Item> store(client, "shop:");     // JSON, for Item's to_json/from_json
//   stampede::Cache<Item> cache({.ttl = 30s}, stampede::redis::backend<Item>(client, "shop:"));
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "stampede/codec.hpp"
#include "stampede/errors.hpp"
#include "stampede/json.hpp"
#include "stampede/redis/bytes_store.hpp"
#include "stampede/redis/client.hpp"
#include "stampede/redis/near_cache.hpp"
#include "stampede/store.hpp"

namespace stampede::redis {

/// Store<T> over Redis: C encodes each value into the bytes a RedisBytesStore keeps. Thread-safe
/// (the Client is). A value the codec cannot read makes get() throw codec_error (the Cache treats
/// it as a miss); one it cannot write makes put() throw codec_error.
///
/// With a near cache (NearCacheOptions::enabled), get() first looks in this process's NearCache
/// (decoded values: a hit costs no round trip and no decode); a miss reads Redis and keeps the
/// answer unless an invalidation of the key arrived meanwhile. put() and invalidate() drop the key
/// from the near cache after Redis has it, and also when they throw (Redis may have applied a write
/// whose reply was lost). When Redis cannot be read, get() answers from the near
/// cache if it can (NearCacheOptions::serve_when_redis_down), else throws.
/// Lifetime and fork(): as RedisBytesStore and NearCache.
template <class T, Codec<T> C = JsonCodec<T>>
class RedisStore final : public Store<T> {
 public:
  using time_point = std::chrono::system_clock::time_point;

  /// @param client the pool (may be shared with a RedisTokenLock).
  /// @param prefix put in front of every key; must not contain '{' or '}'.
  /// @param grace how long Redis keeps a value past its hard expiry; >= 0 (0 = drop at expiry).
  /// @throws std::invalid_argument for a null client, a bad prefix or a negative grace.
  explicit RedisStore(std::shared_ptr<Client> client,
                      std::string prefix = "stampede:", std::chrono::milliseconds grace = kDefaultGrace)
      : bytes_(std::move(client), std::move(prefix), grace) {}

  /// @param client the pool (may be shared with a RedisTokenLock).
  /// @param prefix put in front of every key; must not contain '{' or '}'.
  /// @param grace how long Redis keeps a value past its hard expiry; >= 0 (0 = drop at expiry).
  /// @param near_cache the near cache's settings; none unless near_cache.enabled.
  /// @throws std::invalid_argument for a null client, a bad prefix, a negative grace or bad
  ///         near-cache options; backend_error if the near cache's tracker cannot start.
  RedisStore(std::shared_ptr<Client> client, std::string prefix, std::chrono::milliseconds grace,
             NearCacheOptions near_cache)
      : bytes_(client, prefix, grace) {
    validate(near_cache);
    if (near_cache.enabled) {
      near_ = std::make_unique<NearCache<T>>(std::move(client), std::move(prefix), std::move(near_cache));
    }
  }

  /// @return the entry if present and now < hard_expiry.
  /// @throws codec_error for a value it cannot read; backend_error.
  std::optional<Entry<T>> get(std::string_view key, time_point now) override {
    if (!near_) return read(key, now);
    typename NearCache<T>::Ticket ticket;
    if (std::optional<Entry<T>> e = near_->lookup(key, now, ticket)) return e;
    std::optional<Entry<T>> e;
    try {
      e = read(key, now);
    } catch (const backend_error&) {
      if (std::optional<Entry<T>> kept = near_->fallback(key, now)) return kept;
      throw;
    }
    // A read for serve_stale (time_point::min()) may return an expired entry: not worth keeping.
    if (e && now != time_point::min()) near_->insert(key, *e, ticket);
    return e;
  }

  /// Reads Redis itself, never the near cache (whose copy may lag another process's write); keeps
  /// nothing in the near cache. For the Cache's lock holders (the leader's double check, a
  /// refresh's check of the entry it saw).
  /// @throws codec_error for a value it cannot read; backend_error.
  std::optional<Entry<T>> get_authoritative(std::string_view key, time_point now) override {
    return read(key, now);
  }

  /// Stores `entry` for (hard_expiry - now) + grace if the key's fence hash vouches for
  /// entry.fence (RedisBytesStore::put).
  /// Drops the key from the near cache afterwards whatever the outcome: a write that throws
  /// backend_error (e.g. its reply timed out) may have reached Redis all the same.
  /// @return PutResult::stale_fence if refused: entry.fence is below the hash's floor or born, or
  ///         there is no fence hash (this call then creates it).
  /// @throws codec_error (encode); backend_error.
  PutResult put(std::string_view key, const Entry<T>& entry, time_point now) override {
    PutResult r{};
    try {
      r = bytes_.put(key, encoded(entry), now);
    } catch (...) {
      forget_near_copy(key);  // a write whose reply was lost may have reached Redis all the same
      throw;
    }
    forget_near_copy(key);
    return r;
  }

  /// put() if the value hash in Redis (never the near cache, which may lag) still carries fence
  /// `expected` (RedisBytesStore::put_if_unchanged).
  /// @throws codec_error (encode); backend_error.
  PutResult put_if_unchanged(std::string_view key, std::uint64_t expected, const Entry<T>& entry,
                             time_point now) override {
    PutResult r{};
    try {
      r = bytes_.put_if_unchanged(key, expected, encoded(entry), now);
    } catch (...) {
      forget_near_copy(key);  // as in put()
      throw;
    }
    forget_near_copy(key);
    return r;
  }

  /// Stores `entry` with a fence drawn on the server in the same script, never refused
  /// (RedisBytesStore::put_with_new_fence); entry.fence is ignored.
  /// @return the fence the entry was stored with. @throws codec_error (encode); backend_error.
  std::uint64_t put_with_new_fence(std::string_view key, const Entry<T>& entry, time_point now) {
    std::uint64_t fence = 0;
    try {
      fence = bytes_.put_with_new_fence(key, encoded(entry), now);
    } catch (...) {
      forget_near_copy(key);  // as in put()
      throw;
    }
    forget_near_copy(key);
    return fence;
  }

  /// Deletes the value and raises the key's fence floor to `fence` (creating the fence hash if
  /// there is none). Drops the key from the near cache whatever the outcome, as put() does.
  /// @throws backend_error.
  void invalidate(std::string_view key, std::uint64_t fence) override {
    try {
      bytes_.invalidate(key, fence);
    } catch (...) {
      forget_near_copy(key);  // as in put()
      throw;
    }
    forget_near_copy(key);
  }

  /// Adds the counters of the byte store and of the near cache.
  void add_counters(BackendCounters& counters) const override {
    bytes_.add_counters(counters);
    if (near_) near_->add_counters(counters);
  }

  /// @return the near cache, or null when it is off.
  [[nodiscard]] NearCache<T>* near_cache() const noexcept { return near_.get(); }

  [[nodiscard]] const std::string& prefix() const noexcept { return bytes_.prefix(); }
  [[nodiscard]] std::chrono::milliseconds grace() const noexcept { return bytes_.grace(); }

 private:
  static Entry<std::string> encoded(const Entry<T>& entry) {
    return Entry<std::string>{C::encode(entry.value), entry.soft_expiry, entry.hard_expiry, entry.fence,
                              entry.load_time};
  }

  // Drops `key` from the near cache after this process wrote it (or tried to).
  void forget_near_copy(std::string_view key) {
    if (near_) near_->forget(key);
  }

  std::optional<Entry<T>> read(std::string_view key, time_point now) {
    std::optional<Entry<std::string>> raw = bytes_.get(key, now);
    if (!raw) return std::nullopt;
    return Entry<T>{decode(raw->value), raw->soft_expiry, raw->hard_expiry, raw->fence, raw->load_time};
  }

  static T decode(std::string_view bytes) {
    try {
      return C::decode(bytes);
    } catch (const codec_error&) {
      throw;
    } catch (const std::exception& e) {
      throw codec_error(std::string("stampede::redis: cannot decode value: ") + e.what());
    }
  }

  RedisBytesStore bytes_;
  std::unique_ptr<NearCache<T>> near_;  // null when the near cache is off
};

}  // namespace stampede::redis
