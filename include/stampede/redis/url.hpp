// stampede/redis/url.hpp: Endpoint, where a Redis server is, and parse_url(), which reads it from a URL.
//
// Two schemes: `redis://` (TCP, IPv4, IPv6 in brackets, host names) and `unix://` (a socket path),
// both with optional ACL user and password (%-encoded where needed) and a database number.
//
//   stampede::redis::Endpoint e = stampede::redis::parse_url("redis://app:s%40cret@[::1]:6380/2");
//   // e.host == "::1", e.port == 6380, e.user == "app", e.password == "s@cret", e.db == 2
//   std::string where = stampede::redis::to_string(e);   // "[::1]:6380", never the password
#pragma once

#include <string>
#include <string_view>

#include "stampede/redis/export.hpp"

namespace stampede::redis {

/// Where to connect, as parsed from a URL by parse_url(). A plain value.
struct Endpoint {
  bool unix_socket = false;
  std::string host = "127.0.0.1";  ///< TCP host name or address (no brackets for IPv6)
  int port = 6379;                 ///< TCP port
  std::string path;                ///< unix socket path
  std::string user;                ///< ACL user; empty = AUTH with the password only
  std::string password;            ///< empty = no AUTH
  int db = 0;                      ///< SELECTed when not 0
};

/// Parses `redis://[[user]:password@]host[:port][/db]` and `unix://[[user]:password@]/path[?db=N]`.
/// User and password may be %-encoded; `redis://secret@host` is a password without a user. IPv6
/// hosts go in brackets: `redis://[::1]:6379`. Ports are 1-65535, databases 0-1048576.
/// @param url the URL.
/// @return the endpoint.
/// @throws std::invalid_argument naming what is wrong with `url`: the scheme, no host, a bad port,
///         a bad database number, a bad or truncated %-escape, an unclosed '[' or junk after ']',
///         no socket path, a host in a unix URL, a query other than ?db=N. The message quotes the
///         URL with its password replaced by "***".
STAMPEDE_REDIS_EXPORT Endpoint parse_url(std::string_view url);

/// @return "host:port" ("[v6-address]:port") or the socket path, for messages; no credentials.
STAMPEDE_REDIS_EXPORT std::string to_string(const Endpoint& endpoint);

}  // namespace stampede::redis
