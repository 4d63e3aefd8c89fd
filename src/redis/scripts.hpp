// src/redis/scripts.hpp: the Lua scripts of the Redis backend (documented in docs/wire-format.md).
#pragma once

#include "stampede/redis/client.hpp"

namespace stampede::redis::detail {

/// KEYS: lock, fence. ARGV: token, ttl_ms, fence_ttl_ms. Takes the lock (SET NX PX), draws a
/// fence (a fence hash it creates is born with it) and keeps the fence hash at least
/// fence_ttl_ms. @return the fence, or nil if held.
const Script& acquire_script();
/// KEYS: lock. ARGV: token, channel. @return 1 if released (and `released` published), else 0.
const Script& release_script();
/// KEYS: lock, fence. ARGV: token, ttl_ms, fence_ttl_ms. @return 1 if renewed (and the fence hash
/// kept at least fence_ttl_ms), else 0.
const Script& renew_script();
/// KEYS: fence. ARGV: fence_ttl_ms. @return a new fence, drawn as by the acquire script.
const Script& bump_fence_script();
/// KEYS: value, fence. ARGV: fence, value, soft_ms, hard_ms, load_ms, px_ms, channel, fence_ttl_ms.
/// Refuses a fence below the hash's floor or born, and refuses any fence when there is no fence
/// hash (which it then creates, born with a new fence).
/// @return 1 if stored (and `stored` published), 0 if refused for its fence.
const Script& put_script();
/// KEYS, ARGV[1..8]: as put_script. ARGV[9]: the expected fence. put_script's write if the value key
/// holds a value hash whose `fence` field is ARGV[9]; else 0 and nothing is written.
const Script& put_if_unchanged_script();
/// KEYS: value, fence. ARGV: value, soft_ms, hard_ms, load_ms, px_ms, channel, fence_ttl_ms.
/// Draws a fence as the acquire script does and stores the value with it (never refused).
/// @return the fence.
const Script& put_new_fence_script();
/// KEYS: value, fence. ARGV: fence, fence_ttl_ms. Deletes the value, raises the floor (creating
/// the fence hash, born with a new fence, if there is none). @return 1.
const Script& invalidate_script();
/// KEYS: fence. ARGV: minimum, fence_ttl_ms. Raises `next` to at least ARGV[1] (creating the
/// fence hash, born with a new fence, if there is none). @return the new `next`.
const Script& raise_fence_script();

}  // namespace stampede::redis::detail
