// stampede/redis/store.hpp: RedisStore<T>, cache entries in Redis.
//
// Each entry is a hash at `{prefix}{key}` (docs/wire-format.md, format 1): the codec's bytes plus
// expiries and fence. Writes run a Lua script that refuses a fence below the key's floor.
//
//   auto client = stampede::redis::Client::connect("redis://127.0.0.1:6379");
//   stampede::Cache<Item> cache({.ttl = 30s}, stampede::redis::backend<Item>(client, "shop:"));
//   Item item = cache.get_or_compute("item:1", [] { return db_load_item(1); });
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "stampede/codec.hpp"
#include "stampede/errors.hpp"
#include "stampede/json.hpp"
#include "stampede/redis/client.hpp"
#include "stampede/redis/detail/wire.hpp"
#include "stampede/store.hpp"

namespace stampede::redis {

/// How long a value key outlives its hard expiry by default (see RedisStore).
inline constexpr std::chrono::milliseconds kDefaultGrace{std::chrono::seconds{60}};

/// Store<T> over Redis. Thread-safe (the Client is).
///
/// get() is one HGETALL; put() and invalidate() one script each. Expiry is judged by the caller's
/// `now` against the stored hard_expiry_ms, so an injected clock works; Redis itself drops the key
/// `grace` after the hard expiry (PEXPIRE relative to `now`), which keeps an expired value around
/// long enough for OnWaitTimeout::serve_stale (get(key, time_point::min()) returns it).
///
/// A key that holds anything else than a format-1 value hash (garbage written by someone else, a
/// future format, a value the codec cannot read) makes get() throw codec_error: the Cache counts
/// it as a decode error, treats it as a miss, and the next load overwrites it.
template <class T, class Codec = JsonCodec<T>>
class RedisStore final : public Store<T> {
 public:
  using time_point = std::chrono::system_clock::time_point;

  /// @param client the pool (may be shared with a RedisTokenLock).
  /// @param prefix put in front of every key; must not contain '{' or '}'.
  /// @param grace how long Redis keeps a value past its hard expiry; >= 0 (0 = drop at expiry).
  /// @throws std::invalid_argument for a null client, a bad prefix or a negative grace.
  explicit RedisStore(std::shared_ptr<Client> client,
                      std::string prefix = "stampede:", std::chrono::milliseconds grace = kDefaultGrace)
      : client_(std::move(client)), prefix_(std::move(prefix)), grace_(grace) {
    if (!client_) throw std::invalid_argument("stampede::redis::RedisStore: client must not be null");
    if (grace_.count() < 0) throw std::invalid_argument("stampede::redis::RedisStore: grace must be >= 0");
    detail::check_prefix(prefix_);
  }

  /// @return the entry if present and now < hard_expiry.
  /// @throws codec_error for a value it cannot read; backend_error.
  std::optional<Entry<T>> get(std::string_view key, time_point now) override {
    std::optional<detail::RawEntry> raw = detail::get_entry(*client_, prefix_, key);
    if (!raw) return std::nullopt;
    Entry<T> e;
    e.hard_expiry = from_ms(raw->hard_expiry_ms);
    if (now >= e.hard_expiry) return std::nullopt;
    e.soft_expiry = from_ms(raw->soft_expiry_ms);
    e.fence = raw->fence;
    e.load_time = std::chrono::milliseconds(raw->load_time_ms);
    try {
      e.value = Codec::decode(raw->value);
    } catch (const codec_error&) {
      throw;
    } catch (const std::exception& ex) {
      throw codec_error(std::string("stampede::redis: cannot decode value: ") + ex.what());
    }
    return e;
  }

  /// Stores `entry` for (hard_expiry - now) + grace unless the key's fence floor is higher.
  /// @return PutResult::stale_fence if refused. @throws codec_error (encode); backend_error.
  PutResult put(std::string_view key, const Entry<T>& entry, time_point now) override {
    detail::RawEntry raw;
    raw.value = Codec::encode(entry.value);
    raw.soft_expiry_ms = to_ms(entry.soft_expiry);
    raw.hard_expiry_ms = to_ms(entry.hard_expiry);
    raw.load_time_ms = entry.load_time.count();
    raw.fence = entry.fence;
    // In milliseconds since the epoch, which cannot overflow for any pair of time points.
    const std::int64_t left = raw.hard_expiry_ms - to_ms(now);
    const std::int64_t px = std::max<std::int64_t>(1, left + grace_.count());
    return detail::put_entry(*client_, prefix_, key, raw, px) ? PutResult::stored : PutResult::stale_fence;
  }

  /// Deletes the value and raises the key's fence floor to `fence`. @throws backend_error.
  void invalidate(std::string_view key, std::uint64_t fence) override {
    detail::invalidate_entry(*client_, prefix_, key, fence);
  }

  [[nodiscard]] const std::string& prefix() const noexcept { return prefix_; }
  [[nodiscard]] std::chrono::milliseconds grace() const noexcept { return grace_; }

 private:
  static std::int64_t to_ms(time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  }
  // Clamped: a value hash written by someone else may hold any number (system_clock's nanoseconds
  // end in 2262).
  static time_point from_ms(std::int64_t ms) {
    using std::chrono::milliseconds;
    constexpr auto kMax =
        std::chrono::duration_cast<milliseconds>(time_point::max().time_since_epoch()).count();
    constexpr auto kMin =
        std::chrono::duration_cast<milliseconds>(time_point::min().time_since_epoch()).count();
    if (ms >= kMax) return time_point::max();
    if (ms <= kMin) return time_point::min();
    return time_point(std::chrono::duration_cast<time_point::duration>(milliseconds(ms)));
  }

  std::shared_ptr<Client> client_;
  std::string prefix_;
  std::chrono::milliseconds grace_;
};

}  // namespace stampede::redis
