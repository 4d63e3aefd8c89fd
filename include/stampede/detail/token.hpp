// stampede/detail/token.hpp: unique lock tokens.
#pragma once

#include <string>

namespace stampede::detail {

/// 128 bits from the kernel's CSPRNG (getrandom(2)) as 32 lowercase hex characters. Each call
/// asks the kernel, so a fork()ed child can never repeat its parent's tokens (a user-space
/// generator copied by fork() would).
/// @throws stampede::error if the kernel has no randomness to give (never on Linux >= 3.17).
std::string random_token();

}  // namespace stampede::detail
