#include "stampede/redis/bytes_store.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "wire.hpp"

namespace stampede::redis {
namespace {

using time_point = RedisBytesStore::time_point;

std::int64_t to_ms(time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// Clamped: a value hash written by someone else may hold any number (system_clock's nanoseconds
// end in 2262).
time_point from_ms(std::int64_t ms) {
  using std::chrono::milliseconds;
  constexpr auto kMax =
      std::chrono::duration_cast<milliseconds>(time_point::max().time_since_epoch()).count();
  constexpr auto kMin =
      std::chrono::duration_cast<milliseconds>(time_point::min().time_since_epoch()).count();
  if (ms >= kMax) return time_point::max();
  if (ms <= kMin) return time_point::min();
  return time_point(std::chrono::duration_cast<time_point::duration>(milliseconds(ms)));
}

}  // namespace

RedisBytesStore::RedisBytesStore(std::shared_ptr<Client> client, std::string prefix,
                                 std::chrono::milliseconds grace)
    : client_(std::move(client)), prefix_(std::move(prefix)), grace_(grace) {
  if (!client_) throw std::invalid_argument("stampede::redis::RedisBytesStore: client must not be null");
  if (grace_.count() < 0) throw std::invalid_argument("stampede::redis::RedisBytesStore: grace must be >= 0");
  detail::check_prefix(prefix_);
}

std::optional<Entry<std::string>> RedisBytesStore::get(std::string_view key, time_point now) {
  std::optional<detail::RawEntry> raw = detail::get_entry(*client_, prefix_, key);
  if (!raw) return std::nullopt;
  const time_point hard = from_ms(raw->hard_expiry_ms);
  if (now >= hard) return std::nullopt;
  return Entry<std::string>{std::move(raw->value), from_ms(raw->soft_expiry_ms), hard, raw->fence,
                            std::chrono::milliseconds(raw->load_time_ms)};
}

namespace {
detail::RawEntry raw_of(const Entry<std::string>& entry) {
  detail::RawEntry raw;
  raw.value = entry.value;
  raw.soft_expiry_ms = to_ms(entry.soft_expiry);
  raw.hard_expiry_ms = to_ms(entry.hard_expiry);
  raw.load_time_ms = entry.load_time.count();
  raw.fence = entry.fence;
  return raw;
}
}  // namespace

std::int64_t RedisBytesStore::px_ms(const Entry<std::string>& entry, time_point now) const {
  // In milliseconds since the epoch, which cannot overflow for any pair of time points.
  const std::int64_t left = to_ms(entry.hard_expiry) - to_ms(now);
  return std::max<std::int64_t>(1, left + grace_.count());
}

PutResult RedisBytesStore::put(std::string_view key, const Entry<std::string>& entry, time_point now) {
  return detail::put_entry(*client_, prefix_, key, raw_of(entry), px_ms(entry, now)) ? PutResult::stored
                                                                                     : PutResult::stale_fence;
}

PutResult RedisBytesStore::put_if_unchanged(std::string_view key, std::uint64_t expected,
                                            const Entry<std::string>& entry, time_point now) {
  return detail::put_entry_if_unchanged(*client_, prefix_, key, expected, raw_of(entry), px_ms(entry, now))
             ? PutResult::stored
             : PutResult::stale_fence;
}

std::uint64_t RedisBytesStore::put_with_new_fence(std::string_view key, const Entry<std::string>& entry,
                                                  time_point now) {
  return detail::put_entry_with_new_fence(*client_, prefix_, key, raw_of(entry), px_ms(entry, now));
}

void RedisBytesStore::invalidate(std::string_view key, std::uint64_t fence) {
  detail::invalidate_entry(*client_, prefix_, key, fence);
}

}  // namespace stampede::redis
