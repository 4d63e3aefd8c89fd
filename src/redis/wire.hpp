// src/redis/wire.hpp: the Redis backend's wire format (docs/wire-format.md): key names, the value
// hash, and the calls of the scripts that read and write them. Private to the backend.
//
//   std::string k = detail::value_key("shop:", "item:1");                 // "shop:{item:1}"
//   if (auto e = detail::get_entry(client, "shop:", "item:1")) use(e->value);
//   auto fence = detail::acquire_lock(client, "shop:", "item:1", token, 5s);
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "stampede/redis/reply.hpp"

namespace stampede::redis {
class Client;
}  // namespace stampede::redis

namespace stampede::redis::detail {

/// Version written in the `format` field of every value hash.
inline constexpr std::string_view kFormatVersion = "1";

/// How long a fence hash outlives the last lock, renewal, value or invalidation that wrote it
/// (docs/wire-format.md, "Fences"): every script that writes it extends its TTL to at least the
/// lock TTL, or the value key's TTL, plus this.
inline constexpr std::chrono::milliseconds kFenceLinger{std::chrono::hours{1}};

/// `{prefix}{key}` with the key in a hash tag: `stampede:{item:1}`.
std::string value_key(std::string_view prefix, std::string_view key);
/// `{prefix}lock:{key}`: the token lock (plain string, SET NX PX).
std::string lock_key(std::string_view prefix, std::string_view key);
/// `{prefix}fence:{key}`: hash with `next` (fence counter), `floor` (highest fence written or
/// invalidated) and `born` (the lowest fence the hash vouches for: the one drawn when it was made).
std::string fence_key(std::string_view prefix, std::string_view key);
/// `{prefix}done:{key}`: pub/sub channel, published on store and release.
std::string done_channel(std::string_view prefix, std::string_view key);

/// @throws std::invalid_argument if `prefix` contains '{' or '}' (it would break the hash tags).
void check_prefix(std::string_view prefix);

/// A value hash as stored, before the codec decodes `value`.
struct RawEntry {
  std::string value;
  std::int64_t soft_expiry_ms = 0;
  std::int64_t hard_expiry_ms = 0;
  std::int64_t load_time_ms = 0;
  std::uint64_t fence = 0;
};

/// HGETALL of the value key. @return std::nullopt if there is no such key.
/// @throws codec_error if the key holds something else than a format-1 value hash;
///         backend_error.
std::optional<RawEntry> get_entry(Client& client, std::string_view prefix, std::string_view key);

/// Decodes an HGETALL reply (field, value, field, value, ...) of a value key; unknown fields are
/// ignored, a repeated field's last value counts, an odd last element is ignored.
/// @param reply the server's reply.
/// @return std::nullopt for an empty array (no such key).
/// @throws codec_error if it is not a format-1 value hash (wrong format, a required field missing,
///         a time or fence field that is not a decimal integer of its type); backend_error if
///         `reply` is not an array.
std::optional<RawEntry> decode_entry(Reply reply);

/// The fenced write script: stores `entry` for `px_ms` milliseconds (hard TTL + grace) and
/// publishes `stored`, unless entry.fence is below the fence hash's floor or born, or there is no
/// fence hash (the script then creates one, born with a new fence).
/// @return false if refused for its fence. @throws backend_error.
bool put_entry(Client& client, std::string_view prefix, std::string_view key, const RawEntry& entry,
               std::int64_t px_ms);

/// put_entry() if the value key still holds a value hash stored with fence `expected`; else
/// nothing is written. @return false if refused (changed, gone, or its fence). @throws backend_error.
bool put_entry_if_unchanged(Client& client, std::string_view prefix, std::string_view key,
                            std::uint64_t expected, const RawEntry& entry, std::int64_t px_ms);

/// Draws a new fence for the key (as the acquire script does) and stores `entry` with it, in one
/// script; entry.fence is ignored. Never refused.
/// @return the fence it was stored with. @throws backend_error.
std::uint64_t put_entry_with_new_fence(Client& client, std::string_view prefix, std::string_view key,
                                       const RawEntry& entry, std::int64_t px_ms);

/// Deletes the value key and raises the fence floor to `fence` (creating the fence hash if needed).
void invalidate_entry(Client& client, std::string_view prefix, std::string_view key, std::uint64_t fence);

/// The acquire script on one server: SET lock token NX PX ttl and, if that took it, a new fence.
/// @return the fence, or std::nullopt if the lock is held. @throws backend_error.
std::optional<std::uint64_t> acquire_lock(Client& client, std::string_view prefix, std::string_view key,
                                          std::string_view token, std::chrono::milliseconds ttl);
/// Compare-and-delete, publishing `released`. @return true if `token` held the lock.
bool release_lock(Client& client, std::string_view prefix, std::string_view key, std::string_view token);
/// Compare-and-pexpire (also extends the fence hash's TTL). @return true if `token` held the lock.
bool renew_lock(Client& client, std::string_view prefix, std::string_view key, std::string_view token,
                std::chrono::milliseconds ttl);
/// Draws a fence without taking the lock. @return the new fence. @throws backend_error.
std::uint64_t bump_fence(Client& client, std::string_view prefix, std::string_view key);
/// Raises the fence counter to at least `minimum`. @return the counter afterwards.
std::uint64_t raise_fence(Client& client, std::string_view prefix, std::string_view key,
                          std::uint64_t minimum);
/// PUBLISHes `message` on the key's channel. @throws backend_error.
void publish(Client& client, std::string_view prefix, std::string_view key, std::string_view message);

}  // namespace stampede::redis::detail
