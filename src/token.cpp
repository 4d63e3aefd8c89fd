#include "stampede/detail/token.hpp"

#include <sys/random.h>

#include <cerrno>
#include <cstdint>

#include "stampede/errors.hpp"

namespace stampede::detail {

std::string random_token() {
  std::uint8_t bytes[16];
  std::size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw error("stampede: getrandom() failed; cannot make a lock token");
    }
    got += static_cast<std::size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string token(32, '0');
  for (std::size_t i = 0; i < sizeof bytes; ++i) {
    token[2 * i] = kHex[bytes[i] >> 4];
    token[2 * i + 1] = kHex[bytes[i] & 0xF];
  }
  return token;
}

}  // namespace stampede::detail
