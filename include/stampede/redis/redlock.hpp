// stampede/redis/redlock.hpp: Redlock, a token lock held by a majority of N independent Redis nodes.
//
// Survives the loss of a minority of nodes, at the price of N round trips per operation. Read the
// caveats below (and docs/operations.md) before relying on it for correctness.
//
//   stampede::redis::Redlock lock({Client::connect(url_a), Client::connect(url_b), Client::connect(url_c)});
//   if (auto t = lock.try_acquire("job:1", 10s)) { run_job(t->fence); lock.release("job:1", t->token); }
//   // on every write the job makes, pass t->fence to the resource so it can refuse stale holders
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stampede/redis/client.hpp"
#include "stampede/redis/token_lock.hpp"
#include "stampede/token_lock.hpp"

namespace stampede::redis {

/// Settings of a Redlock.
struct RedlockOptions {
  /// Allowance for clock rate differences between nodes, as a fraction of the TTL (the Redlock
  /// paper's drift factor). A lock is granted only if ttl - elapsed - drift > 0. In [0, 1).
  double clock_drift_factor = 0.01;
  /// Added to the drift: covers expiry granularity. >= 0; 0 = none.
  std::chrono::milliseconds drift_floor{2};
};

/// TokenLock over N independent Redis servers (no replication between them). Thread-safe.
///
/// try_acquire runs the single-instance acquire script (SET NX PX + fence HINCRBY) with one token
/// on every node in turn and succeeds when a majority (N/2 + 1) took it and time is left of the
/// TTL after the drift allowance; otherwise it releases what it took. The fence is made
/// monotonic across quorums in a second step: the largest per-node fence M of the majority is
/// written back (raise-to-at-least) to a majority; any later majority overlaps it, so sees > M.
///
/// Caveats (Kleppmann's critique applies, and this class does not pretend otherwise):
/// - mutual exclusion assumes bounded clock drift and that a node does not lose its keys; a node
///   restarted without persistence forgets locks and fence counters: keep it down for one TTL
///   before it rejoins (or run it with appendfsync always);
/// - a holder paused past its TTL is not stopped by the lock; only the fence, checked by the
///   resource it writes to, rejects its late writes;
/// - operations cost N (acquire: up to 2N) sequential round trips.
/// Wake-ups: subscribe() listens on the first node that answers; release publishes on every node
/// it reaches, so a waiter is woken while that node is up, and polls otherwise.
class Redlock final : public TokenLock {
 public:
  /// @param nodes >= 1 clients of independent servers (3 or 5 in practice), none null.
  /// @param prefix as for RedisTokenLock; must not contain '{' or '}'.
  /// @throws std::invalid_argument for no node, a null node, a bad prefix or options.
  explicit Redlock(std::vector<std::shared_ptr<Client>> nodes,
                   std::string prefix = "stampede:", RedlockOptions options = {});
  ~Redlock() override;

  /// @return the token and fence if a majority granted it in time, std::nullopt if the lock is
  ///         held (or time ran out). @throws backend_error if too many nodes failed to answer.
  [[nodiscard]] std::optional<LockToken> try_acquire(std::string_view key,
                                                     std::chrono::milliseconds ttl) override;
  /// Releases on every node. @return true if a majority still held the token.
  /// @throws backend_error if no majority answered and the lock was not released on one.
  bool release(std::string_view key, std::string_view token) override;
  /// @return true if a majority renewed it. @throws backend_error if no majority answered.
  [[nodiscard]] bool renew(std::string_view key, std::string_view token,
                           std::chrono::milliseconds ttl) override;
  /// @return a fence above every fence handed out before. @throws backend_error (no majority).
  std::uint64_t bump_fence(std::string_view key) override;
  /// @throws backend_error if no node can be subscribed to.
  [[nodiscard]] std::unique_ptr<Subscription> subscribe(std::string_view key) override;
  /// Publishes on every node. @throws backend_error if none answered.
  void notify(std::string_view key) override;

  /// @return N/2 + 1.
  [[nodiscard]] std::size_t quorum() const noexcept { return nodes_.size() / 2 + 1; }

 private:
  std::uint64_t raise_fence(std::string_view key, std::uint64_t fence, const std::vector<std::size_t>& on);

  std::vector<std::unique_ptr<RedisTokenLock>> nodes_;
  std::string prefix_;
  RedlockOptions options_;
};

}  // namespace stampede::redis
