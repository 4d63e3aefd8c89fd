#include "fd_identity.hpp"

#include <sys/stat.h>
#include <unistd.h>

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

}  // namespace stampede::redis::detail
