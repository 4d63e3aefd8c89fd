// src/redis/connection_pool.hpp: ConnectionPool, the connections of one Client: idle ones kept
// for reuse, new ones opened on demand up to pool_size, and a fork()ed child's way to let go of
// its parent's.
//
//   detail::PooledConnection c = pool.borrow(endpoint, options, address);
//   Reply r = c.connection->command({"PING"});
//   pool.give_back(std::move(c));        // kept for reuse, or closed if it broke
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fd_identity.hpp"
#include "stampede/detail/thread_annotations.hpp"
#include "stampede/redis/client.hpp"

namespace stampede::redis::detail {

/// A pooled connection and the identity of its socket (to close it safely in a fork()ed child).
struct PooledConnection {
  std::unique_ptr<Connection> connection;
  FdIdentity socket;
};

/// The mutable state of a Client: its idle connections and how many are open. Thread-safe.
/// Lifetime: the destructor closes the idle connections; none may be borrowed then.
/// fork(): built for one fork generation; a child builds its own and calls abandon_after_fork()
/// on the parent's instead of destroying it.
class ConnectionPool {
 public:
  explicit ConnectionPool(std::uint64_t generation) noexcept : generation_(generation) {}
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  /// @return the fork generation it was built in.
  [[nodiscard]] std::uint64_t generation() const noexcept { return generation_; }

  /// @return an idle connection, or a new one if fewer than pool_size are open; waits
  ///         borrow_timeout for one to come back otherwise.
  /// @throws backend_error when none comes back in time or a new one cannot be opened.
  PooledConnection borrow(const Endpoint& endpoint, const ClientOptions& options, const std::string& address);

  /// Returns a healthy connection to the pool, or closes a broken one together with every idle one
  /// (after a server restart they are all dead).
  void give_back(PooledConnection c) noexcept;

  /// @return connections open now (idle + borrowed).
  [[nodiscard]] std::size_t open();

  /// For a pool inherited from the parent, in a fork()ed child that has replaced it: closes the
  /// child's copies of the idle sockets, unless a thread of the parent held the lock at fork()
  /// time (it does not exist here: then nothing is touched). Never blocks. The pool and its
  /// connections are abandoned, never destroyed: the condition variable may have waiters that do
  /// not exist either, and destroying a connection would close a descriptor number that may have
  /// been reused meanwhile.
  void abandon_after_fork() noexcept;

 private:
  const std::uint64_t generation_;
  stampede::detail::Mutex mu_;
  std::condition_variable_any cv_;
  std::vector<PooledConnection> idle_ STAMPEDE_GUARDED_BY(mu_);
  std::size_t open_ STAMPEDE_GUARDED_BY(mu_) = 0;
};

}  // namespace stampede::redis::detail
