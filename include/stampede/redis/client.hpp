// stampede/redis/client.hpp: Client, a thread-safe pool of connections to one Redis server, and
// Script, a Lua script it runs.
//
// Commands are argument vectors (binary-safe: any bytes in keys and values, NULs included); Lua
// scripts run by EVALSHA and fall back to EVAL when the server answers NOSCRIPT. connect() checks
// the server at once; create() connects on first use (to start while the server is down).
//
//   auto client = stampede::redis::Client::connect("redis://:secret@127.0.0.1:6379/0");
//   client->command({"SET", "greeting", "hello"});
//   std::string v = client->command({"GET", "greeting"}).str;   // "hello"
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "stampede/redis/connection.hpp"
#include "stampede/redis/export.hpp"
#include "stampede/redis/reply.hpp"
#include "stampede/redis/url.hpp"

namespace stampede::redis {

/// Settings of a Client. Plain values; the defaults suit a Redis on the same network.
struct ClientOptions {
  /// Limit on opening a TCP/unix connection (and AUTH/SELECT on it). 0 = no limit (the OS's).
  std::chrono::milliseconds connect_timeout{1000};
  /// Limit on one command's send + reply. A connection that hits it is discarded. 0 = no limit.
  std::chrono::milliseconds command_timeout{1000};
  /// How long a caller waits for a free connection when all pool_size are in use.
  /// 0 = do not wait: fail at once with backend_error.
  std::chrono::milliseconds borrow_timeout{1000};
  /// Most connections open at once (opened on demand, kept idle for reuse). Must be >= 1.
  std::size_t pool_size = 8;
  /// How often a pub/sub connection (RedisTokenLock's wake-ups) that has received nothing is
  /// PINGed. If the answer does not come within command_timeout (within keepalive_interval when
  /// command_timeout is 0), the connection is declared lost: every waiter is woken to re-check,
  /// and it reconnects. This notices a connection that died without a reset (a network cut, a
  /// stopped server). 0 = never PING (a silent loss is then not noticed).
  std::chrono::milliseconds keepalive_interval{1000};
};

/// A Lua script for Client::eval.
///
/// The server names a script by the SHA-1 digest of its source. A Script learns that digest from
/// the first server that loads it (SCRIPT LOAD answers with it) and keeps it; from then on every
/// Client runs it by EVALSHA, sending only the digest. The digest is the same on every server, so
/// one learned from any server serves all of them.
///
/// Thread-safe: the source never changes; the digest is set at most once, lock-free (a fork()ed
/// child inherits it, and never waits for a thread of the parent). Copyable (a copy keeps the
/// learned digest); not assignable.
class STAMPEDE_REDIS_EXPORT Script {
 public:
  explicit Script(std::string source);
  Script(const Script& other);
  Script& operator=(const Script&) = delete;
  ~Script();

  [[nodiscard]] const std::string& source() const noexcept { return source_; }
  /// @return the 40 lowercase hex characters the server names this script by, once a Client has
  ///         learned them; empty before. Valid as long as the Script.
  [[nodiscard]] std::string_view sha1() const noexcept;

 private:
  friend class Client;
  /// Keeps `digest` unless a digest is kept already.
  void remember_sha1(std::string_view digest) const;

  std::string source_;
  mutable std::atomic<const std::string*> sha1_{nullptr};  // owned; set once
};

/// A pool of connections to one server. Thread-safe: every method may be called from any thread.
///
/// Connections open on demand, up to pool_size; a caller that finds all of them in use waits
/// borrow_timeout. A connection that saw an I/O error or a timeout is closed, never reused, and
/// the idle ones are closed with it (after a server restart they are all dead): the next calls
/// open new ones, so the client reconnects by itself when the server returns.
///
/// Lifetime: a Client must outlive no-one in particular (share it with std::shared_ptr); the
/// destructor closes every idle connection. No call may be in progress when it runs.
///
/// fork(): a child may go on using a Client made before the fork. Its first call replaces the
/// pool with an empty one of its own (new connections, opened on demand) and abandons the
/// parent's: the child closes its copies of the idle sockets (which leaves the parent's
/// connections open) and never touches a connection that another thread of the parent was using
/// at fork() time (that thread does not exist in the child; its socket stays open in the child).
/// The parent keeps its pool. So parent and child never share a connection, and neither reads a
/// reply meant for the other. Connections from open_connection() are the caller's to manage.
class STAMPEDE_REDIS_EXPORT Client {
 public:
  /// Parses `url`, opens one connection (AUTH, SELECT, PING) to check it, and keeps it in the
  /// pool, so a wrong URL, an unreachable server or wrong credentials fail here.
  /// @param url see parse_url().
  /// @param options see ClientOptions.
  /// @return the client.
  /// @throws std::invalid_argument for a bad URL or options; backend_error when the server is
  ///         unreachable, does not answer within connect_timeout, or refuses the credentials.
  static std::shared_ptr<Client> connect(std::string_view url, ClientOptions options = {});

  /// Parses `url` and checks `options`, but connects only on first use: for a server that may be
  /// down when the program starts (e.g. one node of a Redlock). An unreachable server or wrong
  /// credentials then show up as backend_error from the first command, and from every command
  /// until the server can be reached.
  /// @param url see parse_url().
  /// @param options see ClientOptions.
  /// @return the client, with no connection open.
  /// @throws std::invalid_argument for a bad URL or options.
  static std::shared_ptr<Client> create(std::string_view url, ClientOptions options = {});

  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// Runs one command on a pooled connection.
  /// @param argv the command and its arguments, each any bytes.
  /// @return the reply (nil, string, integer, array or status).
  /// @throws reply_error when the server answers with an error; backend_error on I/O error,
  ///         timeout, or no free connection within borrow_timeout.
  Reply command(std::span<const std::string_view> argv);
  Reply command(std::initializer_list<std::string_view> argv) {
    return command(std::span<const std::string_view>(argv.begin(), argv.size()));
  }

  /// Runs `script` by EVALSHA; if the server does not know it (NOSCRIPT: restarted, SCRIPT
  /// FLUSH), by EVAL on the same connection, which also loads it for next time. A script whose
  /// digest is not known yet is loaded first (SCRIPT LOAD), and its digest kept in the Script. A
  /// user whose ACL refuses SCRIPT LOAD (NOPERM) runs scripts whose digest is unknown by EVAL.
  /// @param script the script.
  /// @param keys its KEYS.
  /// @param args its ARGV.
  /// @return the script's reply.
  /// @throws reply_error (a Lua error, a wrong key type); backend_error as for command().
  Reply eval(const Script& script, std::span<const std::string_view> keys,
             std::span<const std::string_view> args);
  Reply eval(const Script& script, std::initializer_list<std::string_view> keys,
             std::initializer_list<std::string_view> args) {
    return eval(script, std::span<const std::string_view>(keys.begin(), keys.size()),
                std::span<const std::string_view>(args.begin(), args.size()));
  }

  /// Opens a connection outside the pool (same endpoint, credentials and timeouts).
  /// @throws backend_error as connect() does.
  [[nodiscard]] std::unique_ptr<Connection> open_connection() const;

  [[nodiscard]] const ClientOptions& options() const noexcept;
  [[nodiscard]] const Endpoint& endpoint() const noexcept;
  /// @return "host:port" or the socket path, for messages.
  [[nodiscard]] const std::string& address() const noexcept;
  /// @return connections open now (idle + in use); for tests and monitoring.
  [[nodiscard]] std::size_t open_connections() const;

 private:
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace stampede::redis
