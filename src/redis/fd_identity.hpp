// src/redis/fd_identity.hpp: FdIdentity, closing a fork()ed child's copy of an inherited socket safely.
//
// A child inherits the parent's sockets (pooled connections, pub/sub connections) but none of the
// threads that were using them. It abandons them (stampede/detail/fork.hpp), and closes its own
// copies of their descriptors without closing an unrelated file that has since reused the number.
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

}  // namespace stampede::redis::detail
