#include "support/fault_proxy.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

namespace stampede_test {

std::size_t ProxySnapshot::open_connections() const noexcept {
  return static_cast<std::size_t>(
      std::count_if(connections.begin(), connections.end(), [](const ProxyConnection& c) { return c.open; }));
}

std::uint64_t ProxySnapshot::received(Direction d) const noexcept {
  std::uint64_t n = 0;
  for (const auto& c : connections) n += c.received[static_cast<std::size_t>(d)];
  return n;
}

std::uint64_t ProxySnapshot::forwarded(Direction d) const noexcept {
  std::uint64_t n = 0;
  for (const auto& c : connections) n += c.forwarded[static_cast<std::size_t>(d)];
  return n;
}

std::uint64_t ProxySnapshot::held(Direction d) const noexcept {
  std::uint64_t n = 0;
  for (const auto& c : connections) {
    if (c.open) n += c.held(d);
  }
  return n;
}

const ProxyConnection* ProxySnapshot::find(std::uint64_t id) const noexcept {
  for (const auto& c : connections) {
    if (c.id == id) return &c;
  }
  return nullptr;
}

namespace {

using steady = std::chrono::steady_clock;

// A direction stops reading from its sender while this much is held (TCP then holds the sender).
constexpr std::uint64_t kMaxHeld = 4u << 20;
constexpr std::size_t kReadChunk = 64u << 10;

[[noreturn]] void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// @return true if `fd` is now non-blocking.
bool set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL, 0);
  return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

// Closes `fd` so that the peer gets a RST (SO_LINGER with a zero timeout).
void reset_close(int fd) {
  if (fd < 0) return;
  const linger lg{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  ::close(fd);
}

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// @return a connected socket to 127.0.0.1:port, or -1.
int connect_loopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const sockaddr_in a = loopback(port);
  // A loopback connect completes (or is refused) at once; it runs on the I/O thread.
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

struct Chunk {
  steady::time_point read_at;
  std::string bytes;
  std::size_t offset = 0;
};

// One direction of a connection: bytes read from `from`, queued, written to `to`.
struct Link {
  std::deque<Chunk> chunks;
  std::uint64_t queued = 0;  // bytes in chunks not yet written
  std::chrono::milliseconds latency{0};
  bool stalled = false;
  bool cut_on_data = false;
  bool eof = false;         // the sender closed its side
  bool shut = false;        // eof passed on: shutdown(to, SHUT_WR)
  bool want_write = false;  // the last write would have blocked

  // @return when the front chunk may be written (time_point::max() if stalled or empty).
  steady::time_point next_release() const {
    if (stalled || chunks.empty()) return steady::time_point::max();
    return chunks.front().read_at + latency;
  }
};

struct Conn {
  std::uint64_t id = 0;
  int client = -1;
  int server = -1;
  bool open = true;
  std::array<Link, 2> links;

  int from(Direction d) const { return d == Direction::upstream ? client : server; }
  int to(Direction d) const { return d == Direction::upstream ? server : client; }
};

struct Defaults {
  std::chrono::milliseconds latency{0};
  bool stalled = false;
  bool cut_on_data = false;
};

constexpr std::array<Direction, 2> kDirections{Direction::upstream, Direction::downstream};
std::size_t index(Direction d) { return static_cast<std::size_t>(d); }

}  // namespace

struct FaultProxy::Impl {
  int listen_fd = -1;
  int wake_read = -1;
  int wake_write = -1;
  int port = 0;
  std::thread io;

  // Everything below is guarded by mu. The I/O thread holds mu except while it polls, so a
  // control method that changed something under mu has taken effect when it returns.
  mutable std::mutex mu;
  std::condition_variable changed;
  int target_port = 0;
  bool stopping = false;
  bool refusing = false;
  std::array<Defaults, 2> defaults{};
  std::vector<std::unique_ptr<Conn>> conns;  // open connections
  std::vector<ProxyConnection> infos;        // every connection, index id - 1
  std::uint64_t accepted = 0;
  std::uint64_t refused = 0;

  void wake() {
    const char b = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake_write, &b, 1);  // EAGAIN: a wake-up is pending
  }

  ProxyConnection& info(const Conn& c) { return infos[c.id - 1]; }

  Conn* find(std::uint64_t id) {
    for (auto& c : conns) {
      if (c->id == id && c->open) return c.get();
    }
    return nullptr;
  }

  void cut(Conn& c) {
    if (!c.open) return;
    reset_close(c.client);
    reset_close(c.server);
    c.client = c.server = -1;
    c.open = false;
    for (Link& l : c.links) {
      l.chunks.clear();
      l.queued = 0;
    }
    info(c).open = false;
  }

  void close_gracefully(Conn& c) {
    ::close(c.client);
    ::close(c.server);
    c.client = c.server = -1;
    c.open = false;
    info(c).open = false;
  }

  void accept_all() {
    for (;;) {
      const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;  // EAGAIN, or an aborted connection: nothing more to take now
      ++accepted;
      const int server = refusing ? -1 : connect_loopback(target_port);
      if (server < 0 || !set_nonblocking(fd) || !set_nonblocking(server)) {
        ++refused;
        reset_close(fd);
        reset_close(server);
        continue;
      }
      auto c = std::make_unique<Conn>();
      c->id = infos.size() + 1;
      c->client = fd;
      c->server = server;
      for (int s : {fd, server}) {
        const int one = 1;
        ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      }
      for (Direction d : kDirections) {
        Link& l = c->links[index(d)];
        l.latency = defaults[index(d)].latency;
        l.stalled = defaults[index(d)].stalled;
        l.cut_on_data = defaults[index(d)].cut_on_data;
      }
      ProxyConnection record;
      record.id = c->id;
      record.open = true;
      infos.push_back(record);
      conns.push_back(std::move(c));
    }
  }

  void read_from(Conn& c, Direction d) {
    Link& l = c.links[index(d)];
    char buf[kReadChunk];
    while (c.open && !l.eof && l.queued < kMaxHeld) {
      const ssize_t n = ::recv(c.from(d), buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        if (l.cut_on_data) {
          cut(c);
          return;
        }
        info(c).received[index(d)] += static_cast<std::uint64_t>(n);
        l.chunks.push_back(Chunk{steady::now(), std::string(buf, static_cast<std::size_t>(n))});
        l.queued += static_cast<std::uint64_t>(n);
        continue;
      }
      if (n == 0) {
        l.eof = true;
        return;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR) continue;
      cut(c);  // the sender reset: pass the reset on
      return;
    }
  }

  void flush(Conn& c, Direction d) {
    Link& l = c.links[index(d)];
    l.want_write = false;
    const auto now = steady::now();
    while (c.open && !l.chunks.empty() && l.next_release() <= now) {
      Chunk& ch = l.chunks.front();
      const ssize_t n = ::send(c.to(d), ch.bytes.data() + ch.offset, ch.bytes.size() - ch.offset,
                               MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          l.want_write = true;
          return;
        }
        cut(c);
        return;
      }
      ch.offset += static_cast<std::size_t>(n);
      l.queued -= static_cast<std::uint64_t>(n);
      info(c).forwarded[index(d)] += static_cast<std::uint64_t>(n);
      if (ch.offset == ch.bytes.size()) l.chunks.pop_front();
    }
    if (c.open && l.eof && l.chunks.empty() && !l.shut) {
      ::shutdown(c.to(d), SHUT_WR);
      l.shut = true;
    }
  }

  void run() {
    std::unique_lock lock(mu);
    std::vector<pollfd> fds;
    std::vector<std::pair<Conn*, Direction>> readers;  // fds[i + 2] reads direction .second
    while (!stopping) {
      // What to wait for: readable senders, writable receivers, the first delayed chunk.
      fds.clear();
      readers.clear();
      fds.push_back({wake_read, POLLIN, 0});
      fds.push_back({listen_fd, POLLIN, 0});
      steady::time_point next = steady::time_point::max();
      for (auto& c : conns) {
        for (Direction d : kDirections) {
          const Link& l = c->links[index(d)];
          short events = 0;
          if (!l.eof && l.queued < kMaxHeld) events |= POLLIN;
          const Link& back =
              c->links[index(d == Direction::upstream ? Direction::downstream : Direction::upstream)];
          if (back.want_write) events |= POLLOUT;  // c->from(d) is back's receiver
          fds.push_back({events != 0 ? c->from(d) : -1, events, 0});
          readers.emplace_back(c.get(), d);
          if (!l.want_write) next = std::min(next, l.next_release());  // else: wait for POLLOUT
        }
      }
      int timeout = -1;
      if (next != steady::time_point::max()) {
        const auto wait = std::chrono::ceil<std::chrono::milliseconds>(next - steady::now());
        timeout = static_cast<int>(std::clamp<std::int64_t>(wait.count(), 0, 60'000));
      }
      lock.unlock();
      const int ready = ::poll(fds.data(), fds.size(), timeout);
      lock.lock();
      if (stopping) break;
      if (ready < 0 && errno != EINTR) break;
      if (fds[0].revents != 0) {
        char buf[64];
        while (::read(wake_read, buf, sizeof buf) > 0) {
        }
      }
      if (fds[1].revents != 0) accept_all();
      for (std::size_t i = 0; i < readers.size(); ++i) {
        auto [c, d] = readers[i];
        if (c->open && fds[i + 2].fd >= 0 && fds[i + 2].revents != 0) read_from(*c, d);
      }
      for (auto& c : conns) {
        for (Direction d : kDirections) flush(*c, d);
        if (c->open && c->links[0].shut && c->links[1].shut) close_gracefully(*c);
      }
      std::erase_if(conns, [](const std::unique_ptr<Conn>& c) { return !c->open; });
      changed.notify_all();
    }
  }

  ProxySnapshot snapshot_locked() const {
    ProxySnapshot s;
    s.accepted = accepted;
    s.refused = refused;
    s.connections = infos;
    return s;
  }

  // Applies `f` to the links of direction `d` of every open connection, and wakes the I/O thread.
  template <class F>
  void each_link(Direction d, F&& f) {
    for (auto& c : conns) {
      if (c->open) f(c->links[index(d)]);
    }
  }
  void changed_state() {
    wake();
    changed.notify_all();
  }
};

FaultProxy::FaultProxy(int target_port) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.target_port = target_port;
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_NONBLOCK | O_CLOEXEC) != 0) throw_errno("fault_proxy: pipe2");
  m.wake_read = pipe_fds[0];
  m.wake_write = pipe_fds[1];
  m.listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (m.listen_fd < 0) throw_errno("fault_proxy: socket");
  const int one = 1;
  ::setsockopt(m.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a = loopback(0);
  if (::bind(m.listen_fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0)
    throw_errno("fault_proxy: bind");
  if (::listen(m.listen_fd, 128) != 0) throw_errno("fault_proxy: listen");
  socklen_t len = sizeof a;
  if (::getsockname(m.listen_fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    throw_errno("fault_proxy: getsockname");
  }
  m.port = ntohs(a.sin_port);
  m.io = std::thread([&m] { m.run(); });
}

FaultProxy::~FaultProxy() {
  Impl& m = *impl_;
  {
    std::lock_guard lock(m.mu);
    m.stopping = true;
    m.wake();
  }
  m.io.join();
  for (auto& c : m.conns) {
    if (c->open) m.close_gracefully(*c);
  }
  ::close(m.listen_fd);
  ::close(m.wake_read);
  ::close(m.wake_write);
}

int FaultProxy::port() const noexcept { return impl_->port; }

std::string FaultProxy::url() const { return "redis://127.0.0.1:" + std::to_string(impl_->port); }

void FaultProxy::set_target(int target_port) {
  std::lock_guard lock(impl_->mu);
  impl_->target_port = target_port;
}

void FaultProxy::set_latency(Direction d, std::chrono::milliseconds latency) {
  std::lock_guard lock(impl_->mu);
  impl_->defaults[index(d)].latency = latency;
  impl_->each_link(d, [&](Link& l) { l.latency = latency; });
  impl_->changed_state();
}

void FaultProxy::set_latency(std::uint64_t id, Direction d, std::chrono::milliseconds latency) {
  std::lock_guard lock(impl_->mu);
  if (Conn* c = impl_->find(id)) c->links[index(d)].latency = latency;
  impl_->changed_state();
}

void FaultProxy::stall(Direction d) {
  std::lock_guard lock(impl_->mu);
  impl_->defaults[index(d)].stalled = true;
  impl_->each_link(d, [](Link& l) { l.stalled = true; });
  impl_->changed_state();
}

void FaultProxy::stall(std::uint64_t id, Direction d) {
  std::lock_guard lock(impl_->mu);
  if (Conn* c = impl_->find(id)) c->links[index(d)].stalled = true;
  impl_->changed_state();
}

void FaultProxy::resume(Direction d) {
  std::lock_guard lock(impl_->mu);
  impl_->defaults[index(d)].stalled = false;
  impl_->each_link(d, [](Link& l) { l.stalled = false; });
  impl_->changed_state();
}

void FaultProxy::resume(std::uint64_t id, Direction d) {
  std::lock_guard lock(impl_->mu);
  if (Conn* c = impl_->find(id)) c->links[index(d)].stalled = false;
  impl_->changed_state();
}

void FaultProxy::cut(std::uint64_t id) {
  std::lock_guard lock(impl_->mu);
  if (Conn* c = impl_->find(id)) impl_->cut(*c);
  impl_->changed_state();
}

void FaultProxy::cut_on_data(std::uint64_t id, Direction d) {
  std::lock_guard lock(impl_->mu);
  if (Conn* c = impl_->find(id)) c->links[index(d)].cut_on_data = true;
  impl_->changed_state();
}

void FaultProxy::cut_on_data(Direction d) {
  std::lock_guard lock(impl_->mu);
  impl_->defaults[index(d)].cut_on_data = true;
  impl_->each_link(d, [](Link& l) { l.cut_on_data = true; });
  impl_->changed_state();
}

void FaultProxy::disarm_cut_on_data() {
  std::lock_guard lock(impl_->mu);
  for (Direction d : kDirections) {
    impl_->defaults[index(d)].cut_on_data = false;
    impl_->each_link(d, [](Link& l) { l.cut_on_data = false; });
  }
  impl_->changed_state();
}

void FaultProxy::cut_all() {
  std::lock_guard lock(impl_->mu);
  for (auto& c : impl_->conns) impl_->cut(*c);
  impl_->changed_state();
}

void FaultProxy::refuse(bool on) {
  std::lock_guard lock(impl_->mu);
  impl_->refusing = on;
  impl_->changed_state();
}

ProxySnapshot FaultProxy::snapshot() const {
  std::lock_guard lock(impl_->mu);
  return impl_->snapshot_locked();
}

bool FaultProxy::wait_until(const std::function<bool(const ProxySnapshot&)>& pred,
                            std::chrono::milliseconds limit) {
  std::unique_lock lock(impl_->mu);
  return impl_->changed.wait_for(lock, limit, [&] { return pred(impl_->snapshot_locked()); });
}

}  // namespace stampede_test
