// tests/redis/redis_server.hpp: a real redis-server per test binary (or per test), started and stopped here.
//
// The server runs on a free loopback port with no persistence, dies with the test process
// (PR_SET_PDEATHSIG), and is killed by the destructor even when the test failed.
//
//   redis_test::RedisServer server;                  // or RedisServer({"--requirepass", "pw"})
//   auto client = stampede::redis::Client::connect(server.url());
//   server.kill();  server.start();                  // same port: "Redis restarted"
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "stampede/redis/client.hpp"

namespace redis_test {

/// One redis-server child process. Thread-compatible; create and destroy it on the main thread
/// (the death signal follows the thread that started it).
class RedisServer {
 public:
  /// Starts a server on a free port. @param extra_args appended to the command line.
  /// @throws std::runtime_error if redis-server cannot be started.
  /// Returns once it answers on every endpoint, see start().
  explicit RedisServer(std::vector<std::string> extra_args = {});
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  /// Starts the server again on the same port (after kill()). Returns once the server answers
  /// PING on its TCP port and, if extra_args has `--unixsocket PATH`, on that socket too.
  /// @throws std::runtime_error if it exits or does not answer within 30 s.
  void start();
  /// SIGKILLs the server and reaps it.
  void kill();
  /// SIGSTOPs the server: its sockets stay open but nothing answers (a hung node, a network cut
  /// without RST). Call resume() before the test ends.
  void pause();
  /// SIGCONTs a paused server.
  void resume();
  [[nodiscard]] bool running() const noexcept { return pid_ > 0; }
  [[nodiscard]] int port() const noexcept { return port_; }
  /// @return redis://127.0.0.1:PORT, with `password` if given.
  [[nodiscard]] std::string url(const std::string& password = {}) const;

 private:
  /// Starts the process and waits until it answers. @return false if it exited at start.
  bool launch();
  [[nodiscard]] std::string unix_socket() const;  ///< from extra_args, empty if none

  std::vector<std::string> extra_args_;
  int port_ = 0;
  pid_t pid_ = -1;
};

/// Resumes a paused server when it goes out of scope, also when the test failed. Declare it after
/// the clients of the server, so that it runs before they are destroyed.
class ResumeOnExit {
 public:
  explicit ResumeOnExit(RedisServer& server) : server_(server) {}
  ~ResumeOnExit() { server_.resume(); }
  ResumeOnExit(const ResumeOnExit&) = delete;
  ResumeOnExit& operator=(const ResumeOnExit&) = delete;

 private:
  RedisServer& server_;
};

/// The server shared by most tests of this binary (started by the test environment).
RedisServer& shared_server();
/// A client of the shared server.
std::shared_ptr<stampede::redis::Client> shared_client();
/// A key prefix no other call returns (tests share one server; they never share keys).
std::string unique_prefix();

/// A child process of this test binary running `--child <args...>`, with pipes to its stdin/stdout.
class Child {
 public:
  explicit Child(const std::vector<std::string>& args);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  /// Writes one line to the child's stdin.
  void send(const std::string& line);
  /// @return the next line of the child's stdout, without '\n'; empty at EOF.
  std::string read_line();
  /// Sends `sig` to the child.
  void signal(int sig);
  /// Waits for the child to exit. @return its exit status (or 128 + signal).
  int wait();
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

 private:
  pid_t pid_ = -1;
  int in_ = -1;
  int out_ = -1;
  std::string buffer_;
  bool reaped_ = false;
};

/// The path of this test binary (set by main).
extern std::string self_path;

}  // namespace redis_test
