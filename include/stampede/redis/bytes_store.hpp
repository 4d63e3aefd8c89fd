// stampede/redis/bytes_store.hpp: RedisBytesStore, cache entries of bytes in Redis: the Redis
// backend's store, without a codec.
//
// Each entry is a hash at `{prefix}{key}` (docs/wire-format.md, format 1): the value's bytes plus
// expiries and fence. Writes run a Lua script that refuses a fence the key's fence hash does not
// vouch for. RedisStore<T> puts a codec in front of it.
//
//   stampede::redis::RedisBytesStore store(stampede::redis::Client::connect(url), "shop:");
//   store.put_with_new_fence("k", {.value = "bytes", .soft_expiry = t + 10s, .hard_expiry = t + 10s}, t);
//   if (auto e = store.get("k", t)) use(e->value);
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "stampede/redis/client.hpp"
#include "stampede/redis/export.hpp"
#include "stampede/store.hpp"

namespace stampede::redis {

/// How long a value key outlives its hard expiry by default (see RedisBytesStore).
inline constexpr std::chrono::milliseconds kDefaultGrace{std::chrono::seconds{60}};

/// Store<std::string> over Redis: values are bytes, stored as they are. Thread-safe (the Client is).
///
/// get() is one HGETALL; put() and invalidate() one script each. Expiry is judged by the caller's
/// `now` against the stored hard_expiry_ms, so an injected clock works; Redis itself drops the key
/// `grace` after the hard expiry (PEXPIRE relative to `now`), which keeps an expired value around
/// long enough for OnWaitTimeout::serve_stale (get(key, time_point::min()) returns it).
///
/// Fences (docs/wire-format.md, "Fences"): put() stores only with a fence that the key's fence hash
/// `{prefix}fence:{key}` vouches for: at or above its `floor` (the highest fence written or
/// invalidated) and its `born` (the first fence drawn after the hash was made). When the hash is
/// missing (never made on this server, or lost: FLUSHALL, a restart without persistence,
/// eviction, its TTL) no fence is vouched for, because one drawn before the loss may belong to a
/// load that an invalidation has since overtaken: put() refuses it, and creates the hash, born
/// with a fence drawn now from the server's clock. So a put needs a fence drawn on this server
/// (RedisTokenLock, on the same server and prefix) or, from another server (Redlock), one drawn
/// after the hash was made: the first put of a key this server holds no fence hash for is refused.
/// put_with_new_fence() draws the fence on the server itself and is never refused.
///
/// A key that holds anything else than a format-1 value hash (garbage written by someone else, a
/// future format) makes get() throw codec_error: the Cache counts it as a decode error, treats it
/// as a miss, and the next load overwrites it.
///
/// Lifetime: holds its Client. fork(): as the Client (a child gets connections of its own).
class STAMPEDE_REDIS_EXPORT RedisBytesStore final : public Store<std::string> {
 public:
  using time_point = std::chrono::system_clock::time_point;

  /// @param client the pool (may be shared with a RedisTokenLock).
  /// @param prefix put in front of every key; must not contain '{' or '}'.
  /// @param grace how long Redis keeps a value past its hard expiry; >= 0 (0 = drop at expiry).
  /// @throws std::invalid_argument for a null client, a bad prefix or a negative grace.
  explicit RedisBytesStore(std::shared_ptr<Client> client,
                           std::string prefix = "stampede:", std::chrono::milliseconds grace = kDefaultGrace);

  /// @return the entry if present and now < hard_expiry.
  /// @throws codec_error for a key that holds no format-1 value hash; backend_error.
  std::optional<Entry<std::string>> get(std::string_view key, time_point now) override;

  /// Stores `entry` for (hard_expiry - now) + grace if the key's fence hash vouches for
  /// entry.fence (see the class comment).
  /// @return PutResult::stale_fence if refused: entry.fence is below the hash's floor or born, or
  ///         there is no fence hash (this call then creates it). @throws backend_error.
  PutResult put(std::string_view key, const Entry<std::string>& entry, time_point now) override;

  /// put() in one script, if the value hash in Redis still carries fence `expected`.
  /// @return PutResult::stale_fence if the value changed or is gone, or put() would refuse.
  /// @throws backend_error.
  PutResult put_if_unchanged(std::string_view key, std::uint64_t expected, const Entry<std::string>& entry,
                             time_point now) override;
  /// Stores `entry` for (hard_expiry - now) + grace with a fence drawn on the server in the same
  /// script (as RedisTokenLock draws one: above every fence handed out for the key before), so it
  /// wins over every write and invalidation before it and is never refused. For writers that hold
  /// no fence of this server; entry.fence is ignored.
  /// @return the fence the entry was stored with. @throws backend_error.
  std::uint64_t put_with_new_fence(std::string_view key, const Entry<std::string>& entry, time_point now);

  /// Deletes the value and raises the key's fence floor to `fence` (creating the fence hash if
  /// there is none). @throws backend_error.
  void invalidate(std::string_view key, std::uint64_t fence) override;

  [[nodiscard]] const std::string& prefix() const noexcept { return prefix_; }
  [[nodiscard]] std::chrono::milliseconds grace() const noexcept { return grace_; }
  [[nodiscard]] const std::shared_ptr<Client>& client() const noexcept { return client_; }

 private:
  // The value key's TTL: (hard_expiry - now) + grace, at least 1 ms.
  [[nodiscard]] std::int64_t px_ms(const Entry<std::string>& entry, time_point now) const;

  std::shared_ptr<Client> client_;
  std::string prefix_;
  std::chrono::milliseconds grace_;
};

}  // namespace stampede::redis
