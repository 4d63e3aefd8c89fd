#include "scripts.hpp"

#include <string>
#include <string_view>

namespace stampede::redis::detail {

// Kept short: each runs atomically on the server, so every branch matters for the protocol.

namespace {

// Lua shared by the scripts that write a fence hash (docs/wire-format.md, "Fences").
//
// keep_for: extends a key's TTL to at least `ms` (never shortens it; PTTL -1 = none yet).
// raise_floor: floor = max(floor, fence), and `next` (if present) at least the floor.
// draw_fence: the next fence, above the last one drawn, the floor and the server's clock in
// microseconds, so that a hash that was lost (expired, evicted, flushed) cannot hand out a fence
// below one handed out before. TIME makes the script non-deterministic: replicate_commands makes
// Redis 3.2-4 replicate its effects (later versions always do).
constexpr std::string_view kFenceLua = R"lua(
local function keep_for(k, ms)
  if redis.call('PTTL', k) < tonumber(ms) then redis.call('PEXPIRE', k, ms) end
end
local function raise_floor(k, fence)
  local f = tonumber(fence)
  if f > tonumber(redis.call('HGET', k, 'floor') or '0') then redis.call('HSET', k, 'floor', fence) end
  local n = redis.call('HGET', k, 'next')
  if n and tonumber(n) < f then redis.call('HSET', k, 'next', fence) end
end
local function draw_fence(k)
  local t = redis.call('TIME')
  local base = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local floor = tonumber(redis.call('HGET', k, 'floor') or '0')
  if floor > base then base = floor end
  if tonumber(redis.call('HGET', k, 'next') or '0') < base then
    redis.call('HSET', k, 'next', string.format('%.0f', base))
  end
  return redis.call('HINCRBY', k, 'next', 1)
end
)lua";

std::string with_fence_lua(std::string_view body) { return std::string(kFenceLua).append(body); }

}  // namespace

const Script& acquire_script() {
  static const Script s(with_fence_lua(R"lua(
if redis.replicate_commands then redis.replicate_commands() end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return false
end
local fence = draw_fence(KEYS[2])
keep_for(KEYS[2], ARGV[3])
return fence
)lua"));
  return s;
}

const Script& release_script() {
  static const Script s(R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.pcall('PUBLISH', ARGV[2], 'released')  -- refused without channel rights: waiters poll
  return 1
end
return 0
)lua");
  return s;
}

const Script& renew_script() {
  static const Script s(with_fence_lua(R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
keep_for(KEYS[2], ARGV[3])
return 1
)lua"));
  return s;
}

const Script& bump_fence_script() {
  static const Script s(with_fence_lua(R"lua(
if redis.replicate_commands then redis.replicate_commands() end
local fence = draw_fence(KEYS[1])
keep_for(KEYS[1], ARGV[1])
return fence
)lua"));
  return s;
}

const Script& put_script() {
  static const Script s(with_fence_lua(R"lua(
if tonumber(ARGV[1]) < tonumber(redis.call('HGET', KEYS[2], 'floor') or '0') then
  return 0
end
raise_floor(KEYS[2], ARGV[1])
keep_for(KEYS[2], ARGV[8])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'format', '1', 'fence', ARGV[1], 'soft_expiry_ms', ARGV[3],
           'hard_expiry_ms', ARGV[4], 'load_time_ms', ARGV[5], 'value', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.pcall('PUBLISH', ARGV[7], 'stored')  -- refused without channel rights: waiters poll
return 1
)lua"));
  return s;
}

const Script& invalidate_script() {
  static const Script s(with_fence_lua(R"lua(
redis.call('DEL', KEYS[1])
raise_floor(KEYS[2], ARGV[1])
keep_for(KEYS[2], ARGV[2])
return 1
)lua"));
  return s;
}

const Script& raise_fence_script() {
  static const Script s(with_fence_lua(R"lua(
local n = tonumber(redis.call('HGET', KEYS[1], 'next') or '0')
if n < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'next', ARGV[1])
  n = tonumber(ARGV[1])
end
keep_for(KEYS[1], ARGV[2])
return n
)lua"));
  return s;
}

}  // namespace stampede::redis::detail
