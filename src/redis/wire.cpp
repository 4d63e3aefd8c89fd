#include "wire.hpp"

#include <charconv>
#include <stdexcept>
#include <utility>

#include "scripts.hpp"
#include "stampede/errors.hpp"
#include "stampede/redis/client.hpp"

namespace stampede::redis::detail {

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

std::uint64_t fence_of(const Reply& r) {
  if (r.type != Reply::Type::integer || r.integer <= 0) {
    throw backend_error("stampede::redis: a fence script answered something else than a fence");
  }
  return static_cast<std::uint64_t>(r.integer);
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
  return decode_entry(std::move(r));
}

std::optional<RawEntry> decode_entry(Reply r) {
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

bool put_entry_if_unchanged(Client& client, std::string_view prefix, std::string_view key,
                            std::uint64_t expected, const RawEntry& entry, std::int64_t px_ms) {
  const std::string vk = value_key(prefix, key), fk = fence_key(prefix, key), ch = done_channel(prefix, key);
  const std::string fence = std::to_string(entry.fence), soft = std::to_string(entry.soft_expiry_ms),
                    hard = std::to_string(entry.hard_expiry_ms), load = std::to_string(entry.load_time_ms),
                    px = std::to_string(px_ms), keep = std::to_string(px_ms + kFenceLinger.count()),
                    was = std::to_string(expected);
  Reply r = client.eval(put_if_unchanged_script(), {vk, fk},
                        {fence, entry.value, soft, hard, load, px, ch, keep, was});
  return r.type == Reply::Type::integer && r.integer == 1;
}

std::uint64_t put_entry_with_new_fence(Client& client, std::string_view prefix, std::string_view key,
                                       const RawEntry& entry, std::int64_t px_ms) {
  const std::string vk = value_key(prefix, key), fk = fence_key(prefix, key), ch = done_channel(prefix, key);
  const std::string soft = std::to_string(entry.soft_expiry_ms), hard = std::to_string(entry.hard_expiry_ms),
                    load = std::to_string(entry.load_time_ms), px = std::to_string(px_ms),
                    keep = std::to_string(px_ms + kFenceLinger.count());
  return fence_of(
      client.eval(put_new_fence_script(), {vk, fk}, {entry.value, soft, hard, load, px, ch, keep}));
}

void invalidate_entry(Client& client, std::string_view prefix, std::string_view key, std::uint64_t fence) {
  const std::string vk = value_key(prefix, key), fk = fence_key(prefix, key), f = std::to_string(fence),
                    keep = std::to_string(kFenceLinger.count());
  client.eval(invalidate_script(), {vk, fk}, {f, keep});
}

// ---- lock and fence ----------------------------------------------------------------------------

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
