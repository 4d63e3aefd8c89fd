// tests/support/fault_proxy.hpp: a fault-injecting TCP proxy for tests (loopback only).
//
// FaultProxy listens on a free 127.0.0.1 port and forwards every connection to a target port on
// 127.0.0.1. Per connection and per direction it can delay bytes, stall them (hold them while the
// sockets stay open: a silently dead link), resume, or cut the connection with a RST, e.g. the
// moment a reply comes back; it can also refuse new connections and cut all open ones. Tests
// synchronise on what it reports (bytes received, held, forwarded) rather than on time.
//
//   stampede_test::FaultProxy proxy(server.port());
//   auto client = stampede::redis::Client::connect(proxy.url());
//   proxy.stall(stampede_test::Direction::downstream);          // replies stop arriving
//   ASSERT_TRUE(proxy.wait_until([](const auto& s) { return s.held(Direction::downstream) > 0; }));
//   proxy.cut_all();                                             // every open connection gets a RST
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace stampede_test {

/// A direction of a proxied connection.
enum class Direction {
  upstream = 0,    ///< client -> target (requests)
  downstream = 1,  ///< target -> client (replies, pub/sub messages)
};

/// What the proxy knows about one connection.
struct ProxyConnection {
  /// 1, 2, ... in the order the proxy accepted them.
  std::uint64_t id = 0;
  /// Both sockets are still open.
  bool open = false;
  /// Bytes read from the sending side, per Direction.
  std::array<std::uint64_t, 2> received{};
  /// Bytes written to the receiving side, per Direction.
  std::array<std::uint64_t, 2> forwarded{};

  /// @return bytes read but not (yet) forwarded in `d`: stalled, delayed, or not yet written.
  [[nodiscard]] std::uint64_t held(Direction d) const noexcept {
    const auto i = static_cast<std::size_t>(d);
    return received[i] - forwarded[i];
  }
};

/// A consistent view of the proxy at one moment.
struct ProxySnapshot {
  /// Connections accepted so far (including refused ones).
  std::uint64_t accepted = 0;
  /// Connections reset at once because refuse() was on or the target could not be reached.
  std::uint64_t refused = 0;
  /// Every connection forwarded so far, open or closed, by id.
  std::vector<ProxyConnection> connections;

  /// @return the connections still open.
  [[nodiscard]] std::size_t open_connections() const noexcept;
  /// @return bytes received in `d`, over all connections.
  [[nodiscard]] std::uint64_t received(Direction d) const noexcept;
  /// @return bytes forwarded in `d`, over all connections.
  [[nodiscard]] std::uint64_t forwarded(Direction d) const noexcept;
  /// @return bytes held in `d`, over all open connections.
  [[nodiscard]] std::uint64_t held(Direction d) const noexcept;
  /// @return the connection with `id`, or nullptr.
  [[nodiscard]] const ProxyConnection* find(std::uint64_t id) const noexcept;
};

/// The proxy. Thread-safe: every method may be called from any thread (but not from a wait_until
/// predicate). Each control method takes effect before it returns: once stall() returned, no more
/// byte of that direction is forwarded; once cut() returned, both peers have been sent a RST.
///
/// Faults: a *default* (set_latency / stall / resume without an id) applies to every open
/// connection and to the ones accepted later; the per-connection overloads change one connection.
/// A stalled direction keeps reading from its sender (up to 4 MiB held per direction, then it
/// stops reading and TCP flow control holds the sender) and forwards nothing until resumed.
/// Latency delays each chunk by the current latency counted from when it was read; changing it
/// re-times the chunks already held.
///
/// Lifetime: one I/O thread, started by the constructor; the destructor stops it, closes every
/// socket (plain close: the peers see EOF) and joins it. Only loopback addresses are used.
class FaultProxy {
 public:
  /// Listens on 127.0.0.1 (a free port) and forwards each connection to 127.0.0.1:target_port.
  /// @throws std::system_error if the listening socket or the I/O thread cannot be made.
  explicit FaultProxy(int target_port);
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  /// @return the port the proxy listens on.
  [[nodiscard]] int port() const noexcept;
  /// @return "redis://127.0.0.1:<port>", for stampede::redis::Client::connect.
  [[nodiscard]] std::string url() const;
  /// Points connections accepted from now on to another port (e.g. a restarted server).
  void set_target(int target_port);

  /// Latency of `d` for every open connection and later ones; 0 = none.
  void set_latency(Direction d, std::chrono::milliseconds latency);
  void set_latency(std::uint64_t id, Direction d, std::chrono::milliseconds latency);
  /// Holds the bytes of `d` (reading on, forwarding nothing) on every open and later connection.
  void stall(Direction d);
  void stall(std::uint64_t id, Direction d);
  /// Forwards `d` again (the held bytes first, in order).
  void resume(Direction d);
  void resume(std::uint64_t id, Direction d);
  /// Resets connection `id` (SO_LINGER 0: both peers get a RST; held bytes are dropped).
  void cut(std::uint64_t id);
  /// Arms connection `id`: the next bytes that arrive in `d` are dropped and the connection is
  /// reset instead (e.g. d = downstream: the server ran the command, the client never hears).
  void cut_on_data(std::uint64_t id, Direction d);
  /// The same for every connection open now and every later one, until disarm_cut_on_data().
  void cut_on_data(Direction d);
  void disarm_cut_on_data();
  /// Resets every open connection.
  void cut_all();
  /// While on, new connections are accepted and reset at once (the port stays bound).
  void refuse(bool on);

  /// @return the current state.
  [[nodiscard]] ProxySnapshot snapshot() const;
  /// Blocks until `pred(snapshot)` is true (re-checked on every change) or `limit` passes.
  /// @return true if `pred` became true.
  bool wait_until(const std::function<bool(const ProxySnapshot&)>& pred,
                  std::chrono::milliseconds limit = std::chrono::seconds(60));

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace stampede_test
