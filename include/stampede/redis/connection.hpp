// stampede/redis/connection.hpp: Connection, one hiredis connection to one Redis server.
//
// What a Client pools, and what a pub/sub reader or a blocking command needs for itself. Commands
// are argument vectors (binary-safe: any bytes, NULs included); error replies come back as replies.
//
//   auto conn = client->open_connection();              // or Connection::open(endpoint, 1s, 1s)
//   conn->command({"PSUBSCRIBE", "news:*"});
//   pollfd p{conn->fd(), POLLIN, 0};
//   if (::poll(&p, 1, 1000) > 0) for (const Reply& m : conn->read_available()) handle(m);
#pragma once

#include <chrono>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "stampede/redis/export.hpp"
#include "stampede/redis/reply.hpp"
#include "stampede/redis/url.hpp"

struct redisContext;  // hiredis, kept out of the public headers

namespace stampede::redis {

/// One connection. Thread-compatible: one thread at a time. Any I/O error or timeout leaves it
/// broken (every later call throws).
/// Lifetime: the destructor closes the socket.
/// fork(): parent and child share its socket; only one of them may use it afterwards.
class STAMPEDE_REDIS_EXPORT Connection {
 public:
  /// Connects to `endpoint`, then AUTHs and SELECTs as it says.
  /// @param endpoint where, and with which credentials and database.
  /// @param connect_timeout limit on connecting and on AUTH/SELECT; 0 = none (the OS's).
  /// @param command_timeout limit on each later command's send + reply; 0 = none.
  /// @return the open connection.
  /// @throws backend_error when the server is unreachable, does not answer in time, or refuses
  ///         the credentials or the database.
  static std::unique_ptr<Connection> open(const Endpoint& endpoint, std::chrono::milliseconds connect_timeout,
                                          std::chrono::milliseconds command_timeout);

  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// Sends `argv` and waits (command_timeout) for its reply; error replies are returned as such.
  /// @param argv the command and its arguments, each any bytes.
  /// @return the reply.
  /// @throws backend_error on I/O error or timeout (the connection is then broken).
  Reply command(std::span<const std::string_view> argv);
  Reply command(std::initializer_list<std::string_view> argv) {
    return command(std::span<const std::string_view>(argv.begin(), argv.size()));
  }
  /// Sends `argv` without waiting for the reply, which read_available() returns later (e.g. PING
  /// on a subscribed connection, whose answer comes between the messages).
  /// @throws backend_error on I/O error or timeout (command_timeout, for the write).
  void send(std::span<const std::string_view> argv);
  void send(std::initializer_list<std::string_view> argv) {
    send(std::span<const std::string_view>(argv.begin(), argv.size()));
  }
  /// @return the socket, to poll() for readability before read_available().
  [[nodiscard]] int fd() const noexcept;
  /// Reads what the socket has (call when poll() says it is readable), then returns every
  /// complete reply buffered so far (pub/sub messages), as take_buffered() does.
  /// @throws backend_error on EOF or I/O error.
  std::vector<Reply> read_available();
  /// @return every complete reply that hiredis has already read from the socket, without reading
  ///         it again: what came in the same read as the last command()'s reply (on a subscribed
  ///         connection, messages sent right behind a SUBSCRIBE's confirmation). poll() does not
  ///         see these bytes; they are no longer in the socket.
  /// @throws backend_error on a protocol error.
  std::vector<Reply> take_buffered();
  /// @return true once an I/O error or a timeout broke the connection.
  [[nodiscard]] bool broken() const noexcept;
  /// @return "host:port" or the socket path, for messages.
  [[nodiscard]] const std::string& address() const noexcept { return address_; }

 private:
  Connection(redisContext* context, std::string address) noexcept;
  redisContext* context_;
  std::string address_;
};

}  // namespace stampede::redis
