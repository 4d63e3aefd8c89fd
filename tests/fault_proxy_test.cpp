// FaultProxy (tests/support/fault_proxy.hpp) against a small echo server: forwarding, stalls,
// latency, cuts, refusals, half-close, shutdown, and controls racing traffic. Every wait is on
// bytes or events the proxy or the server reports; sockets carry a receive timeout as a hang guard.
#include "support/fault_proxy.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using stampede_test::Direction;
using stampede_test::FaultProxy;
using stampede_test::ProxySnapshot;

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

/// A TCP echo server on a free loopback port: one thread per connection sends back what it reads.
/// Counts bytes and how connections ended. Thread-safe; the destructor stops and joins everything.
class EchoServer {
 public:
  EchoServer() {
    if (::pipe2(stop_, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    listen_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = loopback(0);
    if (listen_ < 0 || ::bind(listen_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listen_, 64) != 0) {
      throw std::runtime_error("echo server: cannot listen");
    }
    socklen_t len = sizeof a;
    ::getsockname(listen_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~EchoServer() {
    ::close(stop_[1]);  // every poll() below sees the read end become readable (EOF)
    acceptor_.join();
    for (auto& t : connections_) t.join();
    ::close(stop_[0]);
    ::close(listen_);
  }
  EchoServer(const EchoServer&) = delete;
  EchoServer& operator=(const EchoServer&) = delete;

  int port() const noexcept { return port_; }
  std::uint64_t received() const noexcept { return received_.load(); }
  int accepted() const noexcept { return accepted_.load(); }
  int resets() const noexcept { return resets_.load(); }
  int eofs() const noexcept { return eofs_.load(); }

 private:
  // @return true if `fd` is readable, false once the server stops.
  bool wait_readable(int fd) {
    pollfd p[2] = {{fd, POLLIN, 0}, {stop_[0], POLLIN, 0}};
    while (::poll(p, 2, -1) < 0) {
      if (errno != EINTR) return false;
    }
    return p[1].revents == 0;
  }
  void accept_loop() {
    while (wait_readable(listen_)) {
      const int fd = ::accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      accepted_.fetch_add(1);
      connections_.emplace_back([this, fd] { echo(fd); });
    }
  }
  void echo(int fd) {
    char buf[4096];
    while (wait_readable(fd)) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n == 0) {
        eofs_.fetch_add(1);
        break;
      }
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == ECONNRESET) resets_.fetch_add(1);
        break;
      }
      received_.fetch_add(static_cast<std::uint64_t>(n));
      ssize_t done = 0;
      while (done < n) {
        const ssize_t w = ::send(fd, buf + done, static_cast<std::size_t>(n - done), MSG_NOSIGNAL);
        if (w <= 0) break;
        done += w;
      }
    }
    ::close(fd);
  }

  int listen_ = -1;
  int stop_[2] = {-1, -1};
  int port_ = 0;
  std::thread acceptor_;
  std::vector<std::thread> connections_;  // touched only by the acceptor thread, then the destructor
  std::atomic<std::uint64_t> received_{0};
  std::atomic<int> accepted_{0};
  std::atomic<int> resets_{0};
  std::atomic<int> eofs_{0};
};

/// A blocking client socket with a receive timeout (a hang guard, never expected to fire).
class Client {
 public:
  explicit Client(int port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    const timeval guard{static_cast<time_t>(stampede_test::kHangGuard.count()), 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &guard, sizeof guard);
    const sockaddr_in a = loopback(port);
    connected_ = ::connect(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
  }
  ~Client() { ::close(fd_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const noexcept { return connected_; }
  bool send(const std::string& s) {
    return ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size());
  }
  /// Reads exactly `n` bytes. @return them, or fewer if the connection ended (see last_errno()).
  std::string recv_exact(std::size_t n) {
    std::string out;
    char buf[4096];
    while (out.size() < n) {
      const ssize_t r = ::recv(fd_, buf, std::min(sizeof buf, n - out.size()), 0);
      if (r <= 0) {
        errno_ = r == 0 ? 0 : errno;
        break;
      }
      out.append(buf, static_cast<std::size_t>(r));
    }
    return out;
  }
  /// @return how a read ends: 0 = EOF, an errno (ECONNRESET), or -1 if bytes arrived.
  int read_end() {
    char c;
    const ssize_t r = ::recv(fd_, &c, 1, 0);
    if (r > 0) return -1;
    return r == 0 ? 0 : errno;
  }
  /// @return true if nothing is readable now and the connection has not ended.
  bool nothing_to_read() {
    char c;
    const ssize_t r = ::recv(fd_, &c, 1, MSG_DONTWAIT);
    return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }
  int last_errno() const noexcept { return errno_; }

 private:
  int fd_;
  bool connected_ = false;
  int errno_ = 0;
};

bool has_connections(FaultProxy& proxy, std::size_t n) {
  return proxy.wait_until([n](const ProxySnapshot& s) { return s.connections.size() >= n; });
}

TEST(FaultProxyTest, ForwardsBothWaysAndCountsTheBytes) {
  EchoServer echo;
  FaultProxy proxy(echo.port());
  EXPECT_EQ(proxy.url(), "redis://127.0.0.1:" + std::to_string(proxy.port()));
  Client c(proxy.port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send("hello"));
  EXPECT_EQ(c.recv_exact(5), "hello");
  ASSERT_TRUE(
      proxy.wait_until([](const ProxySnapshot& s) { return s.forwarded(Direction::downstream) == 5; }));
  const ProxySnapshot s = proxy.snapshot();
  EXPECT_EQ(s.accepted, 1u);
  ASSERT_EQ(s.connections.size(), 1u);
  EXPECT_EQ(s.connections[0].id, 1u);
  EXPECT_TRUE(s.connections[0].open);
  EXPECT_EQ(s.received(Direction::upstream), 5u);
  EXPECT_EQ(s.forwarded(Direction::upstream), 5u);
  EXPECT_EQ(s.received(Direction::downstream), 5u);
  EXPECT_EQ(echo.received(), 5u);
}

TEST(FaultProxyTest, StalledUpstreamHoldsTheBytesUntilResumed) {
  EchoServer echo;
  FaultProxy proxy(echo.port());
  proxy.stall(Direction::upstream);
  Client c(proxy.port());
  ASSERT_TRUE(c.send("ping"));
  ASSERT_TRUE(proxy.wait_until([](const ProxySnapshot& s) { return s.held(Direction::upstream) == 4; }));
  EXPECT_EQ(proxy.snapshot().forwarded(Direction::upstream), 0u);
  EXPECT_EQ(echo.received(), 0u);
  EXPECT_TRUE(c.nothing_to_read()) << "a stalled link must stay open and silent";
  proxy.resume(Direction::upstream);
  EXPECT_EQ(c.recv_exact(4), "ping");
  EXPECT_EQ(echo.received(), 4u);
}

TEST(FaultProxyTest, StalledDownstreamIsASilentlyDeadLink) {
  EchoServer echo;
  FaultProxy proxy(echo.port());
  Client c(proxy.port());
  ASSERT_TRUE(has_connections(proxy, 1));
  proxy.stall(1, Direction::downstream);
  ASSERT_TRUE(c.send("one"));
  ASSERT_TRUE(c.send("two"));
  // The server answered both; the proxy holds the answers, the client hears nothing.
  ASSERT_TRUE(proxy.wait_until([](const ProxySnapshot& s) { return s.held(Direction::downstream) == 6; }));
  EXPECT_EQ(echo.received(), 6u);
  EXPECT_TRUE(c.nothing_to_read());
  EXPECT_EQ(proxy.snapshot().open_connections(), 1u);
  proxy.resume(1, Direction::downstream);
  EXPECT_EQ(c.recv_exact(6), "onetwo");
}

TEST(FaultProxyTest, LatencyHoldsEachChunkUntilDueAndKeepsTheOrder) {
  EchoServer echo;
  FaultProxy proxy(echo.port());
  proxy.set_latency(Direction::upstream, 1h);
  Client c(proxy.port());
  ASSERT_TRUE(c.send("abc"));
  ASSERT_TRUE(proxy.wait_until([](const ProxySnapshot& s) { return s.received(Direction::upstream) == 3; }));
  EXPECT_EQ(proxy.snapshot().held(Direction::upstream), 3u) << "a chunk left before its latency passed";
  proxy.set_latency(Direction::upstream, 0ms);  // re-times the held chunk: due now
  EXPECT_EQ(c.recv_exact(3), "abc");

  // Small latencies both ways: everything arrives, in order.
  proxy.set_latency(Direction::upstream, 1ms);
  proxy.set_latency(Direction::downstream, 2ms);
  std::string sent;
  for (int i = 0; i < 50; ++i) {
    const std::string m = "<" + std::to_string(i) + ">";
    ASSERT_TRUE(c.send(m));
    sent += m;
  }
  EXPECT_EQ(c.recv_exact(sent.size()), sent);
}

TEST(FaultProxyTest, CutResetsBothPeers) {
  EchoServer echo;
  FaultProxy proxy(echo.port());
  Client c(proxy.port());
  ASSERT_TRUE(c.send("x"));
  ASSERT_EQ(c.recv_exact(1), "x");
  proxy.cut(1);
  EXPECT_EQ(c.read_end(), ECONNRESET);
  EXPECT_TRUE(stampede_test::eventually([&] { return echo.resets() == 1; })) << "the server saw no reset";
  EXPECT_FALSE(proxy.snapshot().connections[0].open);
}

TEST(FaultProxyTest, CutOnDownstreamDataResetsOnceTheServerHasTheRequest) {
  EchoServer echo;
  FaultProxy proxy(echo.port());
  Client c(proxy.port());
  ASSERT_TRUE(has_connections(proxy, 1));
  proxy.cut_on_data(1, Direction::downstream);
  ASSERT_TRUE(c.send("request"));
  EXPECT_EQ(c.read_end(), ECONNRESET) << "the reply got through";
  EXPECT_EQ(echo.received(), 7u) << "the server never got the request";
  EXPECT_EQ(proxy.snapshot().forwarded(Direction::downstream), 0u);
}

TEST(FaultProxyTest, CutOnDataAppliesToLaterConnectionsUntilDisarmed) {
  EchoServer echo;
  FaultProxy proxy(echo.port());
  proxy.cut_on_data(Direction::upstream);
  {
    Client c(proxy.port());
    ASSERT_TRUE(c.send("lost"));
    EXPECT_EQ(c.read_end(), ECONNRESET);
    EXPECT_EQ(echo.received(), 0u);
  }
  proxy.disarm_cut_on_data();
  Client c(proxy.port());
  ASSERT_TRUE(c.send("kept"));
  EXPECT_EQ(c.recv_exact(4), "kept");
}

TEST(FaultProxyTest, RefuseResetsNewConnectionsUntilTurnedOff) {
  EchoServer echo;
  FaultProxy proxy(echo.port());
  proxy.refuse(true);
  {
    Client c(proxy.port());  // the kernel completes the handshake; the proxy then resets it
    const int end = c.read_end();
    EXPECT_TRUE(end == ECONNRESET || end == 0) << "end " << end;
    EXPECT_TRUE(proxy.wait_until([](const ProxySnapshot& s) { return s.refused == 1; }));
  }
  EXPECT_EQ(echo.accepted(), 0);
  proxy.refuse(false);
  Client c(proxy.port());
  ASSERT_TRUE(c.send("ok"));
  EXPECT_EQ(c.recv_exact(2), "ok");
}

TEST(FaultProxyTest, CutAllResetsEveryOpenConnection) {
  EchoServer echo;
  FaultProxy proxy(echo.port());
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<Client>(proxy.port()));
    ASSERT_TRUE(clients.back()->send("hi"));
    ASSERT_EQ(clients.back()->recv_exact(2), "hi");
  }
  proxy.cut_all();
  for (auto& c : clients) EXPECT_EQ(c->read_end(), ECONNRESET);
  EXPECT_EQ(proxy.snapshot().open_connections(), 0u);
  Client again(proxy.port());  // cut_all is not refuse: new connections work
  ASSERT_TRUE(again.send("again"));
  EXPECT_EQ(again.recv_exact(5), "again");
}

TEST(FaultProxyTest, AnUnreachableTargetResetsTheClient) {
  // A bound socket that does not listen: connecting to its port is refused.
  const int placeholder = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = loopback(0);
  ASSERT_EQ(::bind(placeholder, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(placeholder, reinterpret_cast<sockaddr*>(&a), &len);
  FaultProxy proxy(ntohs(a.sin_port));
  Client c(proxy.port());
  const int end = c.read_end();
  EXPECT_TRUE(end == ECONNRESET || end == 0) << "end " << end;
  EXPECT_TRUE(proxy.wait_until([](const ProxySnapshot& s) { return s.refused == 1; }));
  ::close(placeholder);
}

TEST(FaultProxyTest, SetTargetSendsLaterConnectionsElsewhere) {
  EchoServer first;
  EchoServer second;
  FaultProxy proxy(first.port());
  Client a(proxy.port());
  ASSERT_TRUE(a.send("a"));
  ASSERT_EQ(a.recv_exact(1), "a");
  proxy.set_target(second.port());
  Client b(proxy.port());
  ASSERT_TRUE(b.send("b"));
  ASSERT_EQ(b.recv_exact(1), "b");
  EXPECT_EQ(first.accepted(), 1);
  EXPECT_EQ(second.accepted(), 1);
  ASSERT_TRUE(a.send("still"));  // the open connection keeps its target
  EXPECT_EQ(a.recv_exact(5), "still");
  EXPECT_EQ(first.received(), 6u);
}

TEST(FaultProxyTest, HalfCloseIsPassedOnAndTheConnectionEnds) {
  EchoServer echo;
  FaultProxy proxy(echo.port());
  Client c(proxy.port());
  ASSERT_TRUE(c.send("bye"));
  c.shutdown_write();
  EXPECT_EQ(c.recv_exact(3), "bye");
  EXPECT_EQ(c.read_end(), 0) << "the server's close did not reach the client as EOF";
  EXPECT_TRUE(stampede_test::eventually([&] { return echo.eofs() == 1; }));
  EXPECT_TRUE(proxy.wait_until([](const ProxySnapshot& s) { return s.open_connections() == 0; }));
}

TEST(FaultProxyTest, DestructorClosesOpenAndStalledConnections) {
  EchoServer echo;
  auto proxy = std::make_unique<FaultProxy>(echo.port());
  proxy->stall(Direction::upstream);
  proxy->stall(Direction::downstream);
  Client c(proxy->port());
  ASSERT_TRUE(c.send("held"));
  ASSERT_TRUE(proxy->wait_until([](const ProxySnapshot& s) { return s.held(Direction::upstream) == 4; }));
  proxy.reset();
  EXPECT_EQ(c.read_end(), 0);
  EXPECT_TRUE(stampede_test::eventually([&] { return echo.eofs() == 1; }));
}

TEST(FaultProxyTest, ControlsFromOtherThreadsWhileTrafficFlows) {
  constexpr int kClients = 4;
  constexpr int kRounds = 200;
  EchoServer echo;
  FaultProxy proxy(echo.port());
  std::atomic<int> done{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < kClients; ++t) {
    clients.emplace_back([&, t] {
      Client c(proxy.port());
      for (int i = 0; i < kRounds; ++i) {
        const std::string m = "[" + std::to_string(t) + ":" + std::to_string(i) + "]";
        if (!c.send(m) || c.recv_exact(m.size()) != m) {
          ADD_FAILURE() << "client " << t << " round " << i << " lost its echo";
          return;
        }
      }
      done.fetch_add(1);
    });
  }
  std::thread control([&] {
    for (int i = 0; i < 300 && done.load() < kClients; ++i) {
      const Direction d = i % 2 == 0 ? Direction::upstream : Direction::downstream;
      proxy.stall(d);
      proxy.set_latency(d, std::chrono::milliseconds(i % 3));
      (void)proxy.snapshot();
      proxy.resume(d);
    }
    proxy.set_latency(Direction::upstream, 0ms);
    proxy.set_latency(Direction::downstream, 0ms);
  });
  control.join();
  for (auto& t : clients) t.join();
  EXPECT_EQ(done.load(), kClients);
  const ProxySnapshot s = proxy.snapshot();
  EXPECT_EQ(s.received(Direction::upstream), s.forwarded(Direction::downstream));
}

}  // namespace
