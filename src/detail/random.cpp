#include "stampede/detail/random.hpp"

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

std::minstd_rand& thread_rng() noexcept {
  thread_local std::minstd_rand rng{std::random_device{}()};
  return rng;
}

std::chrono::nanoseconds jittered(std::chrono::nanoseconds d, double spread) noexcept {
  if (spread <= 0) return d;
  std::uniform_real_distribution<double> factor(1.0 - spread, 1.0 + spread);
  return std::chrono::nanoseconds(
      static_cast<std::chrono::nanoseconds::rep>(static_cast<double>(d.count()) * factor(thread_rng())));
}

double uniform_open0() noexcept {
  // uniform_real_distribution gives [0, 1); 1 - u is in (0, 1], so log() stays finite.
  return 1.0 - std::uniform_real_distribution<double>(0.0, 1.0)(thread_rng());
}

}  // namespace stampede::detail
