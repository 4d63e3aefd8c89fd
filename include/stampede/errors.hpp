// stampede/errors.hpp: the one error hierarchy of the library.
//
// Every exception the library throws derives from `stampede::error`, which derives from
// `std::runtime_error`. Losing a lock race is not an error: it is an empty optional or `false`.
//
//   try { v = cache.get_or_compute("k", load); }
//   catch (const stampede::timeout_error&) { /* waited wait_timeout for another loader */ }
//   catch (const stampede::cancelled_error&) { /* CallOptions::stop was requested */ }
//   catch (const stampede::error& e) { /* anything else from the library */ }
#pragma once

#include <stdexcept>
#include <string>

#include "stampede/export.hpp"

namespace stampede {

/// Root of every exception the library throws (bad arguments use std::invalid_argument).
class STAMPEDE_EXPORT error : public std::runtime_error {
 public:
  explicit error(const std::string& what) : std::runtime_error(what) {}
};

/// A caller waited `wait_timeout` for another loader and the policy said to fail.
class STAMPEDE_EXPORT timeout_error : public error {
 public:
  explicit timeout_error(const std::string& what) : error(what) {}
};

/// The caller's stop token (CallOptions::stop) was requested while it waited for a load. Other
/// callers of that load keep waiting; the load is neither repeated nor abandoned because of it.
class STAMPEDE_EXPORT cancelled_error : public error {
 public:
  explicit cancelled_error(const std::string& what) : error(what) {}
};

/// The backend (e.g. Redis) failed: unreachable, wrong password, protocol error, timeout.
class STAMPEDE_EXPORT backend_error : public error {
 public:
  explicit backend_error(const std::string& what) : error(what) {}
};

/// A lease was lost while its holder still needed it (expired or taken by someone else).
class STAMPEDE_EXPORT lock_lost_error : public error {
 public:
  explicit lock_lost_error(const std::string& what) : error(what) {}
};

/// A stored value could not be encoded or decoded.
class STAMPEDE_EXPORT codec_error : public error {
 public:
  explicit codec_error(const std::string& what) : error(what) {}
};

}  // namespace stampede
