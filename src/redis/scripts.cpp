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
// below one handed out before. A hash it creates records `born` = that fence: the lowest fence
// this incarnation of the hash vouches for (every fence handed out before it was made is lower).
// open_hash: makes the hash (with draw_fence) if it does not exist (PTTL -2). @return whether it
// existed: a missing hash means Redis knows nothing of the fences handed out for the key.
// TIME makes the scripts non-deterministic: replicate_commands makes Redis 3.2-4 replicate their
// effects (later versions always do); a script that may draw calls it before its first write.
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
  local fresh = redis.call('PTTL', k) == -2
  local t = redis.call('TIME')
  local base = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local floor = tonumber(redis.call('HGET', k, 'floor') or '0')
  if floor > base then base = floor end
  if tonumber(redis.call('HGET', k, 'next') or '0') < base then
    redis.call('HSET', k, 'next', string.format('%.0f', base))
  end
  local fence = redis.call('HINCRBY', k, 'next', 1)
  if fresh then redis.call('HSET', k, 'born', string.format('%.0f', fence)) end
  return fence
end
local function open_hash(k)
  if redis.call('PTTL', k) ~= -2 then return true end
  draw_fence(k)
  return false
end
)lua";

// The value hash of a put (docs/wire-format.md, "The value hash"), replacing whatever the key
// held, with its TTL; then `stored` on the key's channel (refused without channel rights: waiters
// poll).
constexpr std::string_view kValueLua = R"lua(
local function store_value(k, fence, value, soft, hard, load, px, channel)
  redis.call('DEL', k)
  redis.call('HSET', k, 'format', '1', 'fence', fence, 'soft_expiry_ms', soft,
             'hard_expiry_ms', hard, 'load_time_ms', load, 'value', value)
  redis.call('PEXPIRE', k, px)
  redis.pcall('PUBLISH', channel, 'stored')
end
)lua";

// The fenced write of put_script and put_if_unchanged_script: refused (0) unless the fence hash
// exists and vouches for ARGV[1]; else stores the value and returns 1.
constexpr std::string_view kFencedPutLua = R"lua(
local function fenced_put()
  if not open_hash(KEYS[2]) then
    keep_for(KEYS[2], ARGV[8])
    return 0
  end
  local fence = tonumber(ARGV[1])
  if fence < tonumber(redis.call('HGET', KEYS[2], 'floor') or '0') or
     fence < tonumber(redis.call('HGET', KEYS[2], 'born') or '0') then
    return 0
  end
  raise_floor(KEYS[2], ARGV[1])
  keep_for(KEYS[2], ARGV[8])
  store_value(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
  return 1
end
)lua";

std::string with_fence_lua(std::string_view body) { return std::string(kFenceLua).append(body); }
std::string with_value_lua(std::string_view body) {
  return std::string(kFenceLua).append(kValueLua).append(body);
}

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
  static const Script s(with_value_lua(std::string(kFencedPutLua).append(R"lua(
if redis.replicate_commands then redis.replicate_commands() end
return fenced_put()
)lua")));
  return s;
}

const Script& put_if_unchanged_script() {
  static const Script s(with_value_lua(std::string(kFencedPutLua).append(R"lua(
if redis.replicate_commands then redis.replicate_commands() end
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' or redis.call('HGET', KEYS[1], 'fence') ~= ARGV[9] then
  return 0
end
return fenced_put()
)lua")));
  return s;
}

const Script& put_new_fence_script() {
  static const Script s(with_value_lua(R"lua(
if redis.replicate_commands then redis.replicate_commands() end
local fence = draw_fence(KEYS[2])
raise_floor(KEYS[2], string.format('%.0f', fence))
keep_for(KEYS[2], ARGV[7])
store_value(KEYS[1], string.format('%.0f', fence), ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return fence
)lua"));
  return s;
}

const Script& invalidate_script() {
  static const Script s(with_fence_lua(R"lua(
if redis.replicate_commands then redis.replicate_commands() end
redis.call('DEL', KEYS[1])
open_hash(KEYS[2])
raise_floor(KEYS[2], ARGV[1])
keep_for(KEYS[2], ARGV[2])
return 1
)lua"));
  return s;
}

const Script& raise_fence_script() {
  static const Script s(with_fence_lua(R"lua(
if redis.replicate_commands then redis.replicate_commands() end
open_hash(KEYS[1])
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
