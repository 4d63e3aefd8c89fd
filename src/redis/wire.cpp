#include "stampede/redis/detail/wire.hpp"

#include <charconv>
#include <stdexcept>

#include "scripts.hpp"
#include "stampede/errors.hpp"
#include "stampede/redis/client.hpp"

namespace stampede::redis::detail {

// ---- scripts -----------------------------------------------------------------------------------
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

// ---- keys --------------------------------------------------------------------------------------

namespace {
std::string tagged(std::string_view prefix, std::string_view kind, std::string_view key) {
  std::string out;
  out.reserve(prefix.size() + kind.size() + key.size() + 2);
  out.append(prefix).append(kind).append("{").append(key).append("}");
  return out;
}

template <class Int>
Int parse_field(std::string_view name, const std::string& text) {
  Int v{};
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size()) {
    throw codec_error("stampede::redis: value hash field '" + std::string(name) + "' is not an integer");
  }
  return v;
}
}  // namespace

std::string value_key(std::string_view prefix, std::string_view key) { return tagged(prefix, "", key); }
std::string lock_key(std::string_view prefix, std::string_view key) { return tagged(prefix, "lock:", key); }
std::string fence_key(std::string_view prefix, std::string_view key) { return tagged(prefix, "fence:", key); }
std::string done_channel(std::string_view prefix, std::string_view key) {
  return tagged(prefix, "done:", key);
}

void check_prefix(std::string_view prefix) {
  if (prefix.find_first_of("{}") != std::string_view::npos) {
    throw std::invalid_argument("stampede::redis: prefix must not contain '{' or '}' (hash tags)");
  }
}

// ---- value hash --------------------------------------------------------------------------------

std::optional<RawEntry> get_entry(Client& client, std::string_view prefix, std::string_view key) {
  const std::string k = value_key(prefix, key);
  Reply r;
  try {
    r = client.command({"HGETALL", k});
  } catch (const reply_error& e) {
    if (e.code() == "WRONGTYPE") {
      throw codec_error("stampede::redis: the value key holds something else than a hash");
    }
    throw;
  }
  if (r.type != Reply::Type::array) throw backend_error("stampede::redis: HGETALL gave no array");
  if (r.elements.empty()) return std::nullopt;
  RawEntry e;
  bool have_format = false, have_value = false, have_soft = false, have_hard = false, have_fence = false;
  for (std::size_t i = 0; i + 1 < r.elements.size(); i += 2) {
    const std::string& field = r.elements[i].str;
    std::string& v = r.elements[i + 1].str;
    if (field == "format") {
      if (v != kFormatVersion) throw codec_error("stampede::redis: value format '" + v + "' is not 1");
      have_format = true;
    } else if (field == "value") {
      e.value = std::move(v);
      have_value = true;
    } else if (field == "soft_expiry_ms") {
      e.soft_expiry_ms = parse_field<std::int64_t>(field, v);
      have_soft = true;
    } else if (field == "hard_expiry_ms") {
      e.hard_expiry_ms = parse_field<std::int64_t>(field, v);
      have_hard = true;
    } else if (field == "load_time_ms") {
      e.load_time_ms = parse_field<std::int64_t>(field, v);
    } else if (field == "fence") {
      e.fence = parse_field<std::uint64_t>(field, v);
      have_fence = true;
    }  // unknown fields: a later minor revision may add some; ignore them
  }
  if (!(have_format && have_value && have_soft && have_hard && have_fence)) {
    throw codec_error("stampede::redis: the value hash lacks a required field");
  }
  return e;
}

bool put_entry(Client& client, std::string_view prefix, std::string_view key, const RawEntry& entry,
               std::int64_t px_ms) {
  const std::string vk = value_key(prefix, key), fk = fence_key(prefix, key), ch = done_channel(prefix, key);
  const std::string fence = std::to_string(entry.fence), soft = std::to_string(entry.soft_expiry_ms),
                    hard = std::to_string(entry.hard_expiry_ms), load = std::to_string(entry.load_time_ms),
                    px = std::to_string(px_ms), keep = std::to_string(px_ms + kFenceLinger.count());
  Reply r = client.eval(put_script(), {vk, fk}, {fence, entry.value, soft, hard, load, px, ch, keep});
  return r.type == Reply::Type::integer && r.integer == 1;
}

void invalidate_entry(Client& client, std::string_view prefix, std::string_view key, std::uint64_t fence) {
  const std::string vk = value_key(prefix, key), fk = fence_key(prefix, key), f = std::to_string(fence),
                    keep = std::to_string(kFenceLinger.count());
  client.eval(invalidate_script(), {vk, fk}, {f, keep});
}

// ---- lock and fence ----------------------------------------------------------------------------

namespace {
std::uint64_t fence_of(const Reply& r) {
  if (r.type != Reply::Type::integer || r.integer <= 0) {
    throw backend_error("stampede::redis: a fence script answered something else than a fence");
  }
  return static_cast<std::uint64_t>(r.integer);
}
}  // namespace

std::optional<std::uint64_t> acquire_lock(Client& client, std::string_view prefix, std::string_view key,
                                          std::string_view token, std::chrono::milliseconds ttl) {
  const std::string lk = lock_key(prefix, key), fk = fence_key(prefix, key), px = std::to_string(ttl.count()),
                    keep = std::to_string((ttl + kFenceLinger).count());
  Reply r = client.eval(acquire_script(), {lk, fk}, {token, px, keep});
  if (r.type != Reply::Type::integer) return std::nullopt;
  return fence_of(r);
}

bool release_lock(Client& client, std::string_view prefix, std::string_view key, std::string_view token) {
  const std::string lk = lock_key(prefix, key), ch = done_channel(prefix, key);
  Reply r = client.eval(release_script(), {lk}, {token, ch});
  return r.type == Reply::Type::integer && r.integer == 1;
}

bool renew_lock(Client& client, std::string_view prefix, std::string_view key, std::string_view token,
                std::chrono::milliseconds ttl) {
  const std::string lk = lock_key(prefix, key), fk = fence_key(prefix, key), px = std::to_string(ttl.count()),
                    keep = std::to_string((ttl + kFenceLinger).count());
  Reply r = client.eval(renew_script(), {lk, fk}, {token, px, keep});
  return r.type == Reply::Type::integer && r.integer == 1;
}

std::uint64_t bump_fence(Client& client, std::string_view prefix, std::string_view key) {
  const std::string fk = fence_key(prefix, key), keep = std::to_string(kFenceLinger.count());
  return fence_of(client.eval(bump_fence_script(), {fk}, {keep}));
}

std::uint64_t raise_fence(Client& client, std::string_view prefix, std::string_view key,
                          std::uint64_t minimum) {
  const std::string fk = fence_key(prefix, key), m = std::to_string(minimum),
                    keep = std::to_string(kFenceLinger.count());
  return fence_of(client.eval(raise_fence_script(), {fk}, {m, keep}));
}

void publish(Client& client, std::string_view prefix, std::string_view key, std::string_view message) {
  const std::string ch = done_channel(prefix, key);
  client.command({"PUBLISH", ch, message});
}

}  // namespace stampede::redis::detail
