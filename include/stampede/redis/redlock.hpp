// stampede/redis/redlock.hpp: Redlock, a token lock held by a majority of N independent Redis nodes.
//
// Survives the loss of a minority of nodes, at the price of calling N servers (in parallel) per
// operation. Read the caveats below (and docs/operations.md) before relying on it for correctness.
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
#include "stampede/redis/export.hpp"
#include "stampede/redis/token_lock.hpp"
#include "stampede/token_lock.hpp"

namespace stampede::redis {

namespace detail {
class NodeWorkers;
}  // namespace detail

/// Settings of a Redlock.
struct RedlockOptions {
  /// How long one operation waits for each node (all nodes are called at once). A node that has
  /// not answered by then counts as failed for that operation; its call finishes in the
  /// background (bounded by that node Client's timeouts) and its answer is dropped. Keep it well
  /// below the lock TTL and the callers' wait_timeout: the Redlock description suggests 5-50 ms
  /// for a 10 s TTL. Must be > 0; try_acquire and renew reject a ttl below 10 x node_timeout.
  std::chrono::milliseconds node_timeout{50};
  /// Allowance for clock rate differences between nodes, as a fraction of the TTL (the Redlock
  /// paper's drift factor). A lock is granted only if ttl - elapsed - drift > 0. In [0, 1).
  double clock_drift_factor = 0.01;
  /// Added to the drift: covers expiry granularity. >= 0; 0 = none.
  std::chrono::milliseconds drift_floor{2};
};

/// TokenLock over N independent Redis servers (no replication between them). Thread-safe.
///
/// Every operation calls all nodes at once and waits for each at most node_timeout, and returns
/// as soon as its outcome is known (e.g. a majority granted the lock), so one hung node costs no
/// caller more than node_timeout and usually nothing. try_acquire runs the single-instance
/// acquire script (SET NX PX + a fence) with one token on every node and succeeds when a majority
/// (N/2 + 1) took it and time is left of the TTL after the drift allowance; otherwise it releases
/// it where it was granted (a grant that arrives after try_acquire gave up is released by the
/// worker that receives it, right after). The fence is made monotonic across quorums in a
/// second step: the largest per-node fence M of the majority is written back
/// (raise-to-at-least) to a majority; any later majority overlaps it, so sees > M.
///
/// Caveats (Kleppmann's critique applies, and this class does not pretend otherwise):
/// - mutual exclusion assumes bounded clock drift and that a node does not lose its keys; a node
///   restarted without persistence forgets locks and fence counters: keep it down for one TTL
///   before it rejoins (or run it with appendfsync always);
/// - a holder paused past its TTL is not stopped by the lock; only the fence, checked by the
///   resource it writes to, rejects its late writes;
/// - operations cost one parallel round of N round trips (acquire: two rounds).
/// Wake-ups: subscribe() listens on the first node that confirms; release publishes on every
/// node, so a waiter is woken while its node is up, and polls otherwise (a node that stops
/// answering is noticed by its pub/sub keepalive, which wakes the waiter to subscribe again).
///
/// Threads: each node has up to pool_size worker threads (started on demand) that make its
/// calls. Lifetime: the destructor joins them, so it waits for calls still in progress, at most
/// the node Clients' timeouts (which must therefore be > 0). fork(): a child may use a Redlock
/// made before the fork; it gets its own worker threads, connections and pub/sub readers.
class STAMPEDE_REDIS_EXPORT Redlock final : public TokenLock {
 public:
  /// @param nodes >= 1 clients of independent servers (3 or 5 in practice), none null, each
  ///        with connect_timeout and command_timeout > 0. A node may be down at construction
  ///        (make its client with Client::create): a majority suffices.
  /// @param prefix as for RedisTokenLock; must not contain '{' or '}'.
  /// @throws std::invalid_argument for no node, a null node, a node client without timeouts, a
  ///         bad prefix or options.
  explicit Redlock(std::vector<std::shared_ptr<Client>> nodes,
                   std::string prefix = "stampede:", RedlockOptions options = {});
  ~Redlock() override;
  Redlock(const Redlock&) = delete;
  Redlock& operator=(const Redlock&) = delete;

  /// @return N/2 + 1.
  [[nodiscard]] std::size_t quorum() const noexcept { return nodes_.size() / 2 + 1; }

 private:
  // @return the token and fence if a majority granted it in time, std::nullopt if the lock is
  //         held (or time ran out).
  // @throws std::invalid_argument for an empty key or a ttl below 10 x node_timeout;
  //         backend_error if no majority of nodes answered within node_timeout.
  std::optional<LockToken> do_try_acquire(std::string_view key, std::chrono::milliseconds ttl) override;
  // Releases on every node. @return true if a majority still held the token.
  // @throws backend_error if no majority answered and the lock was not released on one.
  bool do_release(std::string_view key, std::string_view token) override;
  // @return true if a majority renewed it.
  // @throws std::invalid_argument as try_acquire; backend_error if no majority answered.
  bool do_renew(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) override;
  // @return a fence above every fence handed out before. @throws backend_error (no majority).
  std::uint64_t do_bump_fence(std::string_view key) override;
  // Subscribes on every node at once and keeps the first confirmed subscription; waits for the
  // nodes at most as long as one pub/sub connection may take to connect (connect_timeout +
  // command_timeout), so a hung node does not hold it up while another node answers.
  // @throws backend_error if no node can be subscribed to.
  std::unique_ptr<Subscription> do_subscribe(std::string_view key) override;
  // Publishes on every node. @throws backend_error if none answered.
  void do_notify(std::string_view key) override;

  template <class R>
  class Round;
  // Calls `call(node)` on every node (or those in `only`) on its workers, at once. A call not
  // started by `deadline` (or, if skip_once_given_up, by the time the caller gave up) is not
  // made; `undo_late(node, answer)` runs on the worker for an answer that came too late to stand.
  template <class R, class Call, class Undo>
  std::shared_ptr<Round<R>> call_all(Call call, std::chrono::steady_clock::time_point deadline,
                                     bool skip_once_given_up, Undo undo_late,
                                     const std::vector<bool>* only = nullptr);
  std::uint64_t raise_fence(std::string_view key, std::uint64_t fence);
  // Releases the lock on the nodes that `granted` it (waits for them, at most node_timeout).
  void undo(std::string_view key, const std::string& token, const std::vector<bool>& granted);
  void check_ttl(std::chrono::milliseconds ttl) const;

  std::vector<std::unique_ptr<RedisTokenLock>> nodes_;
  std::vector<std::unique_ptr<detail::NodeWorkers>> workers_;  // workers_[i] calls nodes_[i]
  std::string prefix_;
  RedlockOptions options_;
  std::chrono::milliseconds subscribe_budget_{};
};

}  // namespace stampede::redis
