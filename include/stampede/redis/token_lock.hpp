// stampede/redis/token_lock.hpp: RedisTokenLock, the token lock of many processes sharing one Redis.
//
// The standard single-instance protocol (SET lock NX PX, compare-and-delete, compare-and-pexpire
// in Lua), a per-key fence drawn in the same script as the SET, and pub/sub wake-ups.
//
//   auto lock = std::make_shared<stampede::redis::RedisTokenLock>(client, "myapp:");
//   if (auto t = lock->try_acquire("report:7", 5s)) { build(t->fence); lock->release("report:7", t->token); }
//   auto sub = lock->subscribe("report:7");  sub->wait_until(deadline);   // woken by a release
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "stampede/redis/client.hpp"
#include "stampede/redis/export.hpp"
#include "stampede/token_lock.hpp"

namespace stampede::redis {

namespace detail {
class Subscriber;
}  // namespace detail

/// TokenLock over one Redis server. Thread-safe.
///
/// Keys (docs/wire-format.md): lock `{prefix}lock:{key}` = token with PX ttl, fence hash
/// `{prefix}fence:{key}` (fields `next`, `floor`, `born`; with a TTL), channel `{prefix}done:{key}`; `{key}`
/// is a hash tag, so a key's lock, fence and value live in one Cluster slot. A fence is
/// max(next, floor, the server's clock in microseconds) + 1, so fences keep growing when Redis
/// loses the fence hash (FLUSHALL, eviction, a restart without persistence, its TTL). A lock taken by another
/// client that follows the same protocol on the same lock key (e.g. redis-py's `Lock`) excludes this one and
/// the other way round.
///
/// Wake-ups: one dedicated connection per RedisTokenLock PSUBSCRIBEs `{prefix}done:*`; a reader
/// thread dispatches messages to local waiters (per-key generation counters + a condition
/// variable). subscribe() returns only once that pattern subscription is confirmed by the server,
/// so a message published after subscribe() returned cannot be missed while the connection
/// lives. When the connection drops, every waiter is woken (a spurious wake-up: it re-checks) and
/// the reader reconnects (once at once; if that fails, on the next subscribe()). A connection that
/// dies silently (no reset: a network cut, a stopped server) is noticed by a keepalive PING
/// every ClientOptions::keepalive_interval of silence, unanswered within command_timeout.
///
/// Lifetime: the destructor stops and joins the reader thread (which may take up to the
/// client's connect_timeout + command_timeout while it is connecting); Subscriptions may outlive
/// the lock (their wait then returns at once).
///
/// fork(): a child may use a lock made before the fork. Its commands go through the Client, which
/// gives the child connections of its own. Its first subscribe() builds a pub/sub connection and
/// reader thread of its own (the parent's thread does not exist in the child) and abandons the
/// parent's, closing only the child's copy of its socket. A Subscription made before the fork
/// returns at once from wait_until() in the child (a spurious wake-up: re-check, subscribe again).
class STAMPEDE_REDIS_EXPORT RedisTokenLock final : public TokenLock {
 public:
  /// @param client the pool for lock commands (shared with a RedisStore is fine).
  /// @param prefix put in front of every key; must not contain '{' or '}'.
  /// @throws std::invalid_argument for a null client or a bad prefix.
  explicit RedisTokenLock(std::shared_ptr<Client> client, std::string prefix = "stampede:");
  ~RedisTokenLock() override;
  RedisTokenLock(const RedisTokenLock&) = delete;
  RedisTokenLock& operator=(const RedisTokenLock&) = delete;

  /// @return the token holding `key`'s lock, if any (tests and tools). @throws backend_error.
  [[nodiscard]] std::optional<std::string> holder(std::string_view key);

  [[nodiscard]] const std::string& prefix() const noexcept { return prefix_; }
  [[nodiscard]] const std::shared_ptr<Client>& client() const noexcept { return client_; }

 private:
  // One script: SET lock token NX PX ttl, and if that took it, draws a fence.
  // @return token and fence, or std::nullopt if held. @throws backend_error.
  std::optional<LockToken> do_try_acquire(std::string_view key, std::chrono::milliseconds ttl) override;
  // One script: compare-and-delete, then PUBLISH `released` on the key's channel.
  // @return true if the token held the lock. @throws backend_error.
  bool do_release(std::string_view key, std::string_view token) override;
  // One script: compare-and-PEXPIRE (also extends the fence hash's TTL).
  // @return true if renewed. @throws backend_error.
  bool do_renew(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) override;
  // One script: draws a fence as try_acquire does, without the lock.
  // @return the new fence. @throws backend_error.
  std::uint64_t do_bump_fence(std::string_view key) override;
  // Registers a local waiter; (re)connects the pub/sub connection first if needed.
  // @throws backend_error if the pub/sub connection cannot be made and confirmed.
  std::unique_ptr<Subscription> do_subscribe(std::string_view key) override;
  // PUBLISH `stored` on the key's channel. @throws backend_error.
  void do_notify(std::string_view key) override;

  detail::Subscriber& subscriber();

  std::shared_ptr<Client> client_;
  std::string prefix_;
  std::atomic<detail::Subscriber*> subscriber_{nullptr};  // owned; replaced in a fork()ed child
};

}  // namespace stampede::redis
