// src/redis/after_fork.hpp: what the Redis backend does with state a fork()ed child inherits.
//
// A child inherits the parent's sockets (pooled connections, pub/sub connections) and its mutable
// state, but none of its other threads. It must neither use nor free what those threads may have
// been using: it builds fresh state and abandons the old (stampede/detail/fork.hpp). Two helpers:
// FdIdentity lets the child close its copy of an inherited socket without closing an unrelated
// file that has since reused the descriptor number, and keep_abandoned() keeps abandoned state
// reachable, so that a leak checker does not report what was left on purpose.
//
//   detail::FdIdentity socket(fd);          // when the connection is opened
//   socket.close_if_unchanged();            // in the child, for the parent's connection
#pragma once

#include <sys/types.h>

namespace stampede::redis::detail {

/// A file descriptor and the identity (device, inode) of the open file it named when recorded.
/// A value type; thread-compatible.
class FdIdentity {
 public:
  FdIdentity() noexcept = default;
  /// Records what `fd` names now; a descriptor that is not open records nothing.
  explicit FdIdentity(int fd) noexcept;
  /// Closes the descriptor if it still names the file it named when recorded; otherwise (closed,
  /// or reused for another file) leaves it alone. Closing a child's copy of a socket does not
  /// affect the parent's copy: the connection lives while either process holds it.
  /// @return true if it closed the descriptor.
  bool close_if_unchanged() const noexcept;
  [[nodiscard]] int fd() const noexcept { return fd_; }

 private:
  int fd_ = -1;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

/// Keeps `state` reachable until the process exits: state abandoned after fork() is never freed
/// (a mutex in it may be held by a thread that does not exist in the child, a std::thread in it
/// cannot be joined). Thread-safe and lock-free.
void keep_abandoned(const void* state) noexcept;

}  // namespace stampede::redis::detail
