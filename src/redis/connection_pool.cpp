#include "connection_pool.hpp"

#include <poll.h>

#include <chrono>
#include <utility>

#include "stampede/detail/fork.hpp"
#include "stampede/errors.hpp"

namespace stampede::redis::detail {
namespace {

// @return true if the socket has something to read (for an idle connection: EOF or an error).
bool readable(const Connection& c) noexcept {
  pollfd p{c.fd(), POLLIN, 0};
  return ::poll(&p, 1, 0) != 0;
}

}  // namespace

PooledConnection ConnectionPool::borrow(const Endpoint& endpoint, const ClientOptions& options,
                                        const std::string& address) {
  const auto deadline = std::chrono::steady_clock::now() + options.borrow_timeout;
  stampede::detail::MutexLock l(mu_);
  for (;;) {
    while (!idle_.empty()) {
      PooledConnection c = std::move(idle_.back());
      idle_.pop_back();
      if (!readable(*c.connection)) return c;
      // An idle connection has no reply pending: readable means the server closed it (it
      // restarted, or dropped idle clients). Drop it instead of failing the caller's command.
      c.connection.reset();
      --open_;
    }
    if (open_ < options.pool_size) {
      ++open_;
      l.unlock();
      try {
        std::unique_ptr<Connection> c =
            Connection::open(endpoint, options.connect_timeout, options.command_timeout);
        const FdIdentity socket(c->fd());
        l.lock();
        return PooledConnection{std::move(c), socket};
      } catch (...) {
        l.lock();
        --open_;
        cv_.notify_one();
        throw;
      }
    }
    if (options.borrow_timeout.count() == 0 || cv_.wait_until(l, deadline) == std::cv_status::timeout) {
      if (!idle_.empty() || open_ < options.pool_size) continue;
      throw backend_error("redis " + address + ": no free connection within borrow_timeout (" +
                          std::to_string(options.borrow_timeout.count()) + " ms, pool_size " +
                          std::to_string(options.pool_size) + ")");
    }
  }
}

void ConnectionPool::give_back(PooledConnection c) noexcept {
  std::vector<PooledConnection> doomed;
  {
    stampede::detail::MutexLock l(mu_);
    if (!c.connection->broken()) {
      idle_.push_back(std::move(c));
    } else {
      doomed.swap(idle_);
      doomed.push_back(std::move(c));
      open_ -= doomed.size();
    }
  }
  cv_.notify_all();
  // `doomed` closes its connections here, outside the lock.
}

std::size_t ConnectionPool::open() {
  stampede::detail::MutexLock l(mu_);
  return open_;
}

// Leaves the mutex locked on purpose, which the thread-safety analysis cannot follow.
void ConnectionPool::abandon_after_fork() noexcept STAMPEDE_NO_THREAD_SAFETY_ANALYSIS {
  if (mu_.try_lock()) {
    for (PooledConnection& c : idle_) {
      c.socket.close_if_unchanged();
      stampede::detail::keep_abandoned(c.connection.release());
    }
    idle_.clear();
    // Left locked: nothing may use this pool again.
  }
  stampede::detail::keep_abandoned(this);
}

}  // namespace stampede::redis::detail
