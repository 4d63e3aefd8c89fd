#include "stampede/redis/connection.hpp"

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <array>
#include <cerrno>
#include <utility>

#include "stampede/errors.hpp"

namespace stampede::redis {
namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

struct ContextDeleter {
  void operator()(redisContext* c) const noexcept {
    if (c) redisFree(c);
  }
};
using ContextPtr = std::unique_ptr<redisContext, ContextDeleter>;

// Sends argv on `c` and reads its reply. A null return from hiredis means the context is dead.
Reply run(redisContext* c, std::span<const std::string_view> argv, const std::string& address) {
  std::vector<const char*> ptrs;
  std::vector<std::size_t> lens;
  ptrs.reserve(argv.size());
  lens.reserve(argv.size());
  for (std::string_view a : argv) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* r =
      static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()), ptrs.data(), lens.data()));
  if (r == nullptr) {
    const std::string why = c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)
                                ? "timed out"
                                : std::string(c->errstr);
    throw backend_error("redis " + address + ": " + std::string(argv.empty() ? "" : argv[0]) +
                        " failed: " + why);
  }
  Reply out = detail::from_hiredis(*r);
  freeReplyObject(r);
  return out;
}

}  // namespace

std::unique_ptr<Connection> Connection::open(const Endpoint& endpoint,
                                             std::chrono::milliseconds connect_timeout,
                                             std::chrono::milliseconds command_timeout) {
  std::string address = to_string(endpoint);
  ContextPtr c;
  if (connect_timeout.count() > 0) {
    const timeval tv = to_timeval(connect_timeout);
    c.reset(endpoint.unix_socket ? redisConnectUnixWithTimeout(endpoint.path.c_str(), tv)
                                 : redisConnectWithTimeout(endpoint.host.c_str(), endpoint.port, tv));
  } else {
    c.reset(endpoint.unix_socket ? redisConnectUnix(endpoint.path.c_str())
                                 : redisConnect(endpoint.host.c_str(), endpoint.port));
  }
  if (!c) throw backend_error("redis " + address + ": cannot allocate a connection");
  if (c->err) throw backend_error("redis " + address + ": cannot connect: " + std::string(c->errstr));
  // AUTH/SELECT below are bounded by the connect timeout, later commands by the command timeout.
  if (connect_timeout.count() > 0) redisSetTimeout(c.get(), to_timeval(connect_timeout));
  if (!endpoint.password.empty()) {
    // AUTH password (requirepass / the default user) or AUTH user password (ACL, Redis >= 6).
    std::vector<std::string_view> argv{"AUTH"};
    if (!endpoint.user.empty()) argv.push_back(endpoint.user);
    argv.push_back(endpoint.password);
    Reply r = run(c.get(), argv, address);
    if (r.type == Reply::Type::error) {
      throw backend_error("redis " + address + ": AUTH failed (wrong user or password?): " + r.str);
    }
  }
  if (endpoint.db != 0) {
    const std::string db = std::to_string(endpoint.db);
    std::array<std::string_view, 2> argv{"SELECT", db};
    Reply r = run(c.get(), argv, address);
    if (r.type == Reply::Type::error) {
      throw backend_error("redis " + address + ": SELECT " + db + " failed: " + r.str);
    }
  }
  const timeval none{};
  redisSetTimeout(c.get(), command_timeout.count() > 0 ? to_timeval(command_timeout) : none);
  return std::unique_ptr<Connection>(new Connection(c.release(), std::move(address)));
}

Connection::Connection(redisContext* context, std::string address) noexcept
    : context_(context), address_(std::move(address)) {}

Connection::~Connection() {
  if (context_) redisFree(context_);
}

Reply Connection::command(std::span<const std::string_view> argv) {
  if (context_->err) {
    throw backend_error("redis " + address_ + ": connection is broken: " + std::string(context_->errstr));
  }
  return run(context_, argv, address_);
}

void Connection::send(std::span<const std::string_view> argv) {
  if (context_->err) {
    throw backend_error("redis " + address_ + ": connection is broken: " + std::string(context_->errstr));
  }
  std::vector<const char*> ptrs;
  std::vector<std::size_t> lens;
  for (std::string_view a : argv) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  if (redisAppendCommandArgv(context_, static_cast<int>(argv.size()), ptrs.data(), lens.data()) != REDIS_OK) {
    throw backend_error("redis " + address_ + ": cannot send: " + std::string(context_->errstr));
  }
  for (int done = 0; done == 0;) {
    if (redisBufferWrite(context_, &done) != REDIS_OK) {
      throw backend_error("redis " + address_ + ": cannot send: " + std::string(context_->errstr));
    }
  }
}

int Connection::fd() const noexcept { return context_->fd; }

bool Connection::broken() const noexcept { return context_->err != 0; }

std::vector<Reply> Connection::read_available() {
  if (context_->err || redisBufferRead(context_) != REDIS_OK) {
    throw backend_error("redis " + address_ + ": connection lost: " + std::string(context_->errstr));
  }
  return take_buffered();
}

std::vector<Reply> Connection::take_buffered() {
  std::vector<Reply> out;
  for (;;) {
    void* raw = nullptr;
    if (redisGetReplyFromReader(context_, &raw) != REDIS_OK) {
      throw backend_error("redis " + address_ + ": protocol error: " + std::string(context_->errstr));
    }
    if (raw == nullptr) break;
    out.push_back(detail::from_hiredis(*static_cast<const redisReply*>(raw)));
    freeReplyObject(raw);
  }
  return out;
}

}  // namespace stampede::redis
