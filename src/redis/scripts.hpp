// src/redis/scripts.hpp: the Lua scripts of the Redis backend (documented in docs/wire-format.md).
#pragma once

#include "stampede/redis/client.hpp"

namespace stampede::redis::detail {

/// KEYS: lock, fence. ARGV: token, ttl_ms. @return the new fence, or nil if the lock is held.
const Script& acquire_script();
/// KEYS: lock. ARGV: token, channel. @return 1 if released (and `released` published), else 0.
const Script& release_script();
/// KEYS: lock. ARGV: token, ttl_ms. @return 1 if renewed, else 0.
const Script& renew_script();
/// KEYS: value, fence. ARGV: fence, value, soft_ms, hard_ms, load_ms, px_ms, channel.
/// @return 1 if stored (and `stored` published), 0 if refused for its fence.
const Script& put_script();
/// KEYS: value, fence. ARGV: fence. Deletes the value, raises the floor. @return 1.
const Script& invalidate_script();
/// KEYS: fence. ARGV: minimum. Raises `next` to at least ARGV[1]. @return the new `next`.
const Script& raise_fence_script();

}  // namespace stampede::redis::detail
