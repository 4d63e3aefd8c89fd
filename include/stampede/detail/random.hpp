// stampede/detail/random.hpp: the library's randomness: lock tokens, backoff jitter, XFetch draws.
//
// Tokens come from the kernel (a fork()ed child never repeats its parent's); jitter and XFetch
// draw from a per-thread generator seeded once from std::random_device.
//
//   std::string token = detail::random_token();                  // 32 hex characters
//   auto wait = detail::jittered(100ms, 0.25);                    // 75 ms .. 125 ms
//   if (std::log(detail::uniform_open0()) < 0) { /* U in (0, 1] */ }
#pragma once

#include <chrono>
#include <random>
#include <string>

#include "stampede/export.hpp"

namespace stampede::detail {

/// 128 bits from the kernel's CSPRNG (getrandom(2)) as 32 lowercase hex characters. Each call
/// asks the kernel, so a fork()ed child can never repeat its parent's tokens (a user-space
/// generator copied by fork() would).
/// @throws stampede::error if the kernel has no randomness to give (never on Linux >= 3.17).
STAMPEDE_EXPORT std::string random_token();

/// This thread's generator for jitter and sampling; seeded once per thread from std::random_device.
STAMPEDE_EXPORT std::minstd_rand& thread_rng() noexcept;

/// @return `d` scaled by a random factor in [1 - spread, 1 + spread] (`d` itself if spread <= 0).
STAMPEDE_EXPORT std::chrono::nanoseconds jittered(std::chrono::nanoseconds d, double spread) noexcept;

/// @return a uniform draw in (0, 1] (never 0, so its log() is finite).
STAMPEDE_EXPORT double uniform_open0() noexcept;

}  // namespace stampede::detail
