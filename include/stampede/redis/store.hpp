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
#include "stampede/store.hpp"

namespace stampede::redis {

/// Store<T> over Redis: C encodes each value into the bytes a RedisBytesStore keeps. Thread-safe
/// (the Client is). A value the codec cannot read makes get() throw codec_error (the Cache treats
/// it as a miss); one it cannot write makes put() throw codec_error.
/// Lifetime and fork(): as RedisBytesStore.
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

  /// @return the entry if present and now < hard_expiry.
  /// @throws codec_error for a value it cannot read; backend_error.
  std::optional<Entry<T>> get(std::string_view key, time_point now) override {
    std::optional<Entry<std::string>> raw = bytes_.get(key, now);
    if (!raw) return std::nullopt;
    return Entry<T>{decode(raw->value), raw->soft_expiry, raw->hard_expiry, raw->fence, raw->load_time};
  }

  /// Stores `entry` for (hard_expiry - now) + grace unless the key's fence floor is higher.
  /// @return PutResult::stale_fence if refused. @throws codec_error (encode); backend_error.
  PutResult put(std::string_view key, const Entry<T>& entry, time_point now) override {
    return bytes_.put(key,
                      Entry<std::string>{C::encode(entry.value), entry.soft_expiry, entry.hard_expiry,
                                         entry.fence, entry.load_time},
                      now);
  }

  /// Deletes the value and raises the key's fence floor to `fence`. @throws backend_error.
  void invalidate(std::string_view key, std::uint64_t fence) override { bytes_.invalidate(key, fence); }

  /// Adds the counters of the byte store.
  void add_counters(BackendCounters& counters) const override { bytes_.add_counters(counters); }

  [[nodiscard]] const std::string& prefix() const noexcept { return bytes_.prefix(); }
  [[nodiscard]] std::chrono::milliseconds grace() const noexcept { return bytes_.grace(); }

 private:
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
};

}  // namespace stampede::redis
