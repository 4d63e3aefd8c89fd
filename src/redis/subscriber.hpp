// src/redis/subscriber.hpp: Subscriber, the wake-ups of a RedisTokenLock: one PSUBSCRIBE
// connection, its reader thread and its keepalive, and the local waiters it wakes.
//
//   detail::Subscriber s(client, "shop:");
//   std::unique_ptr<Subscription> sub = s.subscribe("item:1");   // confirmed by the server
//   sub->wait_until(deadline);                                   // woken by a `done` message
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "fd_identity.hpp"
#include "stampede/redis/client.hpp"
#include "stampede/token_lock.hpp"

namespace stampede::redis::detail {

/// One connection PSUBSCRIBEd to `{prefix}done:*` and a reader thread that dispatches its messages
/// to local waiters (per-key generation counters and a condition variable). subscribe() returns
/// once the server has confirmed the subscription, so a message published after it returned is not
/// missed while the connection lives. When the connection drops, every waiter is woken (a spurious
/// wake-up: it re-checks) and the reader reconnects (at once; if that fails, on the next
/// subscribe()). A connection silent for ClientOptions::keepalive_interval is PINGed; one that does
/// not answer within command_timeout is declared lost (a network cut, a stopped server).
///
/// Thread-safe. Lifetime: the destructor stops and joins the reader thread (which may take up to
/// the client's connect_timeout + command_timeout while it connects); Subscriptions may outlive it
/// (their wait then returns at once).
/// fork(): built for one fork generation. A child calls abandon_after_fork() instead of the
/// destructor (the reader thread does not exist there) and builds its own Subscriber; a
/// Subscription made before the fork returns at once from wait_until() in the child.
class Subscriber {
 public:
  /// Starts the reader thread; it connects when the first subscribe() asks.
  /// @throws backend_error if the reader's wake-up pipe cannot be made.
  Subscriber(std::shared_ptr<Client> client, const std::string& prefix);
  ~Subscriber();
  Subscriber(const Subscriber&) = delete;
  Subscriber& operator=(const Subscriber&) = delete;

  /// @return the fork generation it was built in.
  [[nodiscard]] std::uint64_t generation() const noexcept { return generation_; }

  /// Registers a waiter for `key`; (re)connects the pub/sub connection first if needed, waiting
  /// at most the client's connect_timeout + command_timeout (30 s if either is 0).
  /// @throws backend_error if the connection cannot be made and confirmed in that time.
  std::unique_ptr<Subscription> subscribe(std::string_view key);

  /// In a fork()ed child, instead of the destructor: closes the child's copies of the pipe and,
  /// unless a dead thread holds the lock, of the pub/sub socket, and keeps the rest, never
  /// destroyed. Never blocks.
  void abandon_after_fork() noexcept;

 private:
  struct Hub;  // shared with every Subscription, so a Subscription may outlive the Subscriber
  class Sub;

  void run();
  bool read_until_lost(Connection& conn);
  void dispatch(const Reply& message);

  std::shared_ptr<Client> client_;
  std::string channel_prefix_;
  std::string pattern_;
  std::shared_ptr<Hub> hub_;
  const std::uint64_t generation_;
  int wake_[2] = {-1, -1};
  FdIdentity wake_ids_[2];
  std::thread thread_;
};

}  // namespace stampede::redis::detail
