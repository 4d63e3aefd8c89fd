#include "after_fork.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <new>

namespace stampede::redis::detail {

FdIdentity::FdIdentity(int fd) noexcept {
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) return;
  fd_ = fd;
  dev_ = st.st_dev;
  ino_ = st.st_ino;
}

bool FdIdentity::close_if_unchanged() const noexcept {
  struct stat st {};
  if (fd_ < 0 || ::fstat(fd_, &st) != 0 || st.st_dev != dev_ || st.st_ino != ino_) return false;
  return ::close(fd_) == 0;
}

namespace {

struct Abandoned {
  const void* state;
  Abandoned* next;
};

// A list that only grows, rooted in a global, so everything on it stays reachable.
std::atomic<Abandoned*> abandoned{nullptr};

}  // namespace

void keep_abandoned(const void* state) noexcept {
  auto* node = new (std::nothrow) Abandoned{state, abandoned.load(std::memory_order_relaxed)};
  if (node == nullptr) return;  // then it is merely unreachable: still never freed
  while (!abandoned.compare_exchange_weak(node->next, node, std::memory_order_release,
                                          std::memory_order_relaxed)) {
  }
}

}  // namespace stampede::redis::detail
