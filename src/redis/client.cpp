#include "stampede/redis/client.hpp"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/time.h>

#include <array>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "fd_identity.hpp"
#include "stampede/detail/fork.hpp"
#include "stampede/detail/thread_annotations.hpp"

namespace stampede::redis {
namespace {

// ---- SHA-1 (FIPS 180-4), only to name scripts for EVALSHA ----------------------------------------

std::uint32_t rotl(std::uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

std::string sha1_hex(std::string_view data) {
  std::array<std::uint32_t, 5> h{0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
  std::string msg(data);
  const std::uint64_t bit_len = static_cast<std::uint64_t>(data.size()) * 8;
  msg.push_back('\x80');
  while (msg.size() % 64 != 56) msg.push_back('\0');
  for (int i = 7; i >= 0; --i) msg.push_back(static_cast<char>((bit_len >> (8 * i)) & 0xFF));
  for (std::size_t block = 0; block < msg.size(); block += 64) {
    std::array<std::uint32_t, 80> w{};
    for (std::size_t i = 0; i < 16; ++i) {
      const auto* p = reinterpret_cast<const unsigned char*>(msg.data() + block + 4 * i);
      w[i] = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
    }
    for (std::size_t i = 16; i < 80; ++i) w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (std::size_t i = 0; i < 80; ++i) {
      std::uint32_t f = 0, k = 0;
      if (i < 20) {
        f = (b & c) | (~b & d);
        k = 0x5A827999u;
      } else if (i < 40) {
        f = b ^ c ^ d;
        k = 0x6ED9EBA1u;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8F1BBCDCu;
      } else {
        f = b ^ c ^ d;
        k = 0xCA62C1D6u;
      }
      const std::uint32_t t = rotl(a, 5) + f + e + k + w[i];
      e = d;
      d = c;
      c = rotl(b, 30);
      b = a;
      a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(40);
  for (std::uint32_t v : h) {
    for (int shift = 28; shift >= 0; shift -= 4) out.push_back(kHex[(v >> shift) & 0xF]);
  }
  return out;
}

// ---- URL parsing -------------------------------------------------------------------------------

[[noreturn]] void bad_url(std::string_view url, const std::string& why) {
  throw std::invalid_argument("stampede::redis: bad URL '" + std::string(url) + "': " + why);
}

std::string percent_decode(std::string_view url, std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    unsigned value = 0;
    if (i + 2 >= s.size()) bad_url(url, "truncated %-escape");
    auto [ptr, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, value, 16);
    if (ec != std::errc() || ptr != s.data() + i + 3) bad_url(url, "bad %-escape");
    out.push_back(static_cast<char>(value));
    i += 2;
  }
  return out;
}

int parse_int(std::string_view url, std::string_view s, const char* what, int lo, int hi) {
  int value = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size() || value < lo || value > hi) {
    bad_url(url, std::string("bad ") + what + " '" + std::string(s) + "'");
  }
  return value;
}

// Splits "[[user]:password@]rest" off the front of `s`.
void parse_userinfo(std::string_view url, std::string_view& s, Endpoint& ep) {
  const auto at = s.rfind('@');
  if (at == std::string_view::npos) return;
  std::string_view info = s.substr(0, at);
  s.remove_prefix(at + 1);
  const auto colon = info.find(':');
  if (colon == std::string_view::npos) {
    // "redis://secret@host" is what redis-py reads as a password-only URL as well.
    ep.password = percent_decode(url, info);
  } else {
    ep.user = percent_decode(url, info.substr(0, colon));
    ep.password = percent_decode(url, info.substr(colon + 1));
  }
}

// "host:port" or the socket path, for messages.
std::string describe(const Endpoint& ep) {
  return ep.unix_socket ? ep.path
                        : (ep.host.find(':') != std::string::npos ? "[" + ep.host + "]" : ep.host) + ":" +
                              std::to_string(ep.port);
}

}  // namespace

Endpoint parse_url(std::string_view url) {
  Endpoint ep;
  std::string_view s = url;
  if (s.starts_with("redis://")) {
    s.remove_prefix(8);
    const auto slash = s.find('/');
    std::string_view authority = s.substr(0, slash);
    std::string_view path = slash == std::string_view::npos ? std::string_view{} : s.substr(slash + 1);
    parse_userinfo(url, authority, ep);
    if (authority.starts_with("[")) {
      const auto close = authority.find(']');
      if (close == std::string_view::npos) bad_url(url, "unclosed '[' in host");
      ep.host = std::string(authority.substr(1, close - 1));
      authority.remove_prefix(close + 1);
      if (!authority.empty()) {
        if (authority[0] != ':') bad_url(url, "junk after ']'");
        ep.port = parse_int(url, authority.substr(1), "port", 1, 65535);
      }
    } else {
      const auto colon = authority.rfind(':');
      ep.host = std::string(authority.substr(0, colon));
      if (colon != std::string_view::npos)
        ep.port = parse_int(url, authority.substr(colon + 1), "port", 1, 65535);
    }
    if (ep.host.empty()) bad_url(url, "no host");
    if (const auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
    if (!path.empty()) ep.db = parse_int(url, path, "database number", 0, 1 << 20);
  } else if (s.starts_with("unix://")) {
    s.remove_prefix(7);
    ep.unix_socket = true;
    const auto slash = s.find('/');
    if (slash == std::string_view::npos) bad_url(url, "no socket path");
    std::string_view authority = s.substr(0, slash);
    parse_userinfo(url, authority, ep);
    if (!authority.empty()) bad_url(url, "a unix URL has no host: use unix:///path/to/socket");
    std::string_view path = s.substr(slash);
    if (const auto q = path.find('?'); q != std::string_view::npos) {
      std::string_view query = path.substr(q + 1);
      path = path.substr(0, q);
      if (!query.starts_with("db=")) bad_url(url, "only ?db=N is understood");
      ep.db = parse_int(url, query.substr(3), "database number", 0, 1 << 20);
    }
    if (path.size() < 2) bad_url(url, "no socket path");
    ep.path = std::string(path);
  } else {
    bad_url(url, "scheme must be redis:// or unix://");
  }
  return ep;
}

// ---- replies ---------------------------------------------------------------------------------

std::string reply_error::code() const { return server_message_.substr(0, server_message_.find(' ')); }

namespace {

Reply convert(const redisReply* r) {
  Reply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::string;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::status;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = Reply::Type::error;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::integer;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::array;
      out.elements.reserve(r->elements);
      for (std::size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
      break;
    default:
      out.type = Reply::Type::nil;
      break;
  }
  return out;
}

[[noreturn]] void throw_reply_error(const std::string& address, std::string_view command, const Reply& r) {
  throw reply_error("redis " + address + ": " + std::string(command) + ": " + r.str, r.str);
}

// ---- connections -------------------------------------------------------------------------------

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
  Reply out = convert(r);
  freeReplyObject(r);
  return out;
}

ContextPtr open_context(const Endpoint& ep, const ClientOptions& options, const std::string& address) {
  ContextPtr c;
  if (options.connect_timeout.count() > 0) {
    const timeval tv = to_timeval(options.connect_timeout);
    c.reset(ep.unix_socket ? redisConnectUnixWithTimeout(ep.path.c_str(), tv)
                           : redisConnectWithTimeout(ep.host.c_str(), ep.port, tv));
  } else {
    c.reset(ep.unix_socket ? redisConnectUnix(ep.path.c_str()) : redisConnect(ep.host.c_str(), ep.port));
  }
  if (!c) throw backend_error("redis " + address + ": cannot allocate a connection");
  if (c->err) throw backend_error("redis " + address + ": cannot connect: " + std::string(c->errstr));
  // AUTH/SELECT below are bounded by the connect timeout, later commands by the command timeout.
  if (options.connect_timeout.count() > 0) redisSetTimeout(c.get(), to_timeval(options.connect_timeout));
  if (!ep.password.empty()) {
    // AUTH password (requirepass / the default user) or AUTH user password (ACL, Redis >= 6).
    std::vector<std::string_view> argv{"AUTH"};
    if (!ep.user.empty()) argv.push_back(ep.user);
    argv.push_back(ep.password);
    Reply r = run(c.get(), argv, address);
    if (r.type == Reply::Type::error) {
      throw backend_error("redis " + address + ": AUTH failed (wrong user or password?): " + r.str);
    }
  }
  if (ep.db != 0) {
    const std::string db = std::to_string(ep.db);
    std::array<std::string_view, 2> argv{"SELECT", db};
    Reply r = run(c.get(), argv, address);
    if (r.type == Reply::Type::error)
      throw backend_error("redis " + address + ": SELECT " + db + " failed: " + r.str);
  }
  const timeval none{};
  redisSetTimeout(c.get(), options.command_timeout.count() > 0 ? to_timeval(options.command_timeout) : none);
  return c;
}

// @return true if the socket has something to read (for an idle connection: EOF or an error).
bool readable(const redisContext* c) noexcept {
  pollfd p{c->fd, POLLIN, 0};
  return ::poll(&p, 1, 0) != 0;
}

// A pooled connection and the identity of its socket (to close it safely in a fork()ed child).
struct Pooled {
  redisContext* context = nullptr;
  detail::FdIdentity socket;
};

// ---- pool --------------------------------------------------------------------------------------

// The mutable state of a Client: its idle connections and how many are open. Thread-safe. Built
// for one fork generation; a child builds its own and abandons the parent's (see Client).
class Pool {
 public:
  explicit Pool(std::uint64_t generation) noexcept : generation_(generation) {}
  ~Pool() {
    stampede::detail::MutexLock l(mu_);
    for (const Pooled& c : idle_) redisFree(c.context);
  }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  [[nodiscard]] std::uint64_t generation() const noexcept { return generation_; }

  // An idle connection, or a new one if fewer than pool_size are open; waits borrow_timeout for
  // one to come back otherwise. @throws backend_error.
  Pooled borrow(const Endpoint& endpoint, const ClientOptions& options, const std::string& address) {
    const auto deadline = std::chrono::steady_clock::now() + options.borrow_timeout;
    stampede::detail::MutexLock l(mu_);
    for (;;) {
      while (!idle_.empty()) {
        Pooled c = idle_.back();
        idle_.pop_back();
        if (!readable(c.context)) return c;
        // An idle connection has no reply pending: readable means the server closed it (it
        // restarted, or dropped idle clients). Drop it instead of failing the caller's command.
        redisFree(c.context);
        --open_;
      }
      if (open_ < options.pool_size) {
        ++open_;
        l.unlock();
        try {
          ContextPtr c = open_context(endpoint, options, address);
          const detail::FdIdentity socket(c->fd);
          l.lock();
          return Pooled{c.release(), socket};
        } catch (...) {
          l.lock();
          --open_;
          cv_.notify_one();
          throw;
        }
      }
      if (options.borrow_timeout.count() == 0 || cv_.wait_until(l, deadline) == std::cv_status::timeout) {
        if (!idle_.empty() || open_ < options.pool_size) continue;
        throw backend_error("redis " + address + ": no free connection within borrow_timeout (" +
                            std::to_string(options.borrow_timeout.count()) + " ms, pool_size " +
                            std::to_string(options.pool_size) + ")");
      }
    }
  }

  // Returns a healthy connection to the pool, or closes a broken one together with every idle one.
  void give_back(Pooled c) noexcept {
    std::vector<Pooled> doomed;
    {
      stampede::detail::MutexLock l(mu_);
      if (c.context->err == 0) {
        idle_.push_back(c);
      } else {
        doomed.swap(idle_);
        doomed.push_back(c);
        open_ -= doomed.size();
      }
    }
    cv_.notify_all();
    for (const Pooled& d : doomed) redisFree(d.context);
  }

  [[nodiscard]] std::size_t open() {
    stampede::detail::MutexLock l(mu_);
    return open_;
  }

  // For a pool inherited from the parent, in a fork()ed child that has replaced it: closes the
  // child's copies of the idle sockets and frees them, unless a thread of the parent held the
  // lock at fork() time (it does not exist here: then nothing is touched). Never blocks. The
  // pool itself is abandoned, never destroyed: its condition variable may have waiters that do
  // not exist either.
  void abandon_after_fork() noexcept {
    if (mu_.try_lock()) {
      for (Pooled& c : idle_) {
        c.socket.close_if_unchanged();
        c.context->fd = -1;  // closed above, or not ours any more: redisFree must not close it
        redisFree(c.context);
      }
      idle_.clear();
      // Left locked: nothing may use this pool again.
    }
    stampede::detail::keep_abandoned(this);
  }

 private:
  const std::uint64_t generation_;
  stampede::detail::Mutex mu_;
  std::condition_variable_any cv_;
  std::vector<Pooled> idle_ STAMPEDE_GUARDED_BY(mu_);
  std::size_t open_ STAMPEDE_GUARDED_BY(mu_) = 0;
};

}  // namespace

// ---- Script ------------------------------------------------------------------------------------

Script::Script(std::string source) : source_(std::move(source)), sha1_(sha1_hex(source_)) {}

// ---- Connection --------------------------------------------------------------------------------

Connection::~Connection() {
  if (context_) redisFree(context_);
}

Reply Connection::command(std::span<const std::string_view> argv) {
  if (context_->err) throw backend_error(std::string("redis: connection is broken: ") + context_->errstr);
  return run(context_, argv, "connection");
}

void Connection::send(std::span<const std::string_view> argv) {
  if (context_->err) throw backend_error(std::string("redis: connection is broken: ") + context_->errstr);
  std::vector<const char*> ptrs;
  std::vector<std::size_t> lens;
  for (std::string_view a : argv) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  if (redisAppendCommandArgv(context_, static_cast<int>(argv.size()), ptrs.data(), lens.data()) != REDIS_OK) {
    throw backend_error(std::string("redis: cannot send: ") + context_->errstr);
  }
  for (int done = 0; done == 0;) {
    if (redisBufferWrite(context_, &done) != REDIS_OK) {
      throw backend_error(std::string("redis: cannot send: ") + context_->errstr);
    }
  }
}

int Connection::fd() const noexcept { return context_->fd; }

std::vector<Reply> Connection::read_available() {
  if (context_->err || redisBufferRead(context_) != REDIS_OK) {
    throw backend_error(std::string("redis: connection lost: ") + context_->errstr);
  }
  std::vector<Reply> out;
  for (;;) {
    void* raw = nullptr;
    if (redisGetReplyFromReader(context_, &raw) != REDIS_OK) {
      throw backend_error(std::string("redis: protocol error: ") + context_->errstr);
    }
    if (raw == nullptr) break;
    out.push_back(convert(static_cast<redisReply*>(raw)));
    freeReplyObject(raw);
  }
  return out;
}

// ---- Client ------------------------------------------------------------------------------------

struct Client::Impl {
  Impl(Endpoint e, ClientOptions o)
      : endpoint(std::move(e)),
        options(o),
        address(describe(endpoint)),
        pool(new Pool(stampede::detail::fork_generation())) {}

  ~Impl() {
    Pool* p = pool.load(std::memory_order_acquire);
    if (p->generation() == stampede::detail::fork_generation()) {
      delete p;
    } else {
      p->abandon_after_fork();  // a child that never used the client
    }
  }

  // The pool of this process: in a fork()ed child, the first call replaces the parent's.
  Pool& current_pool() {
    Pool* p = pool.load(std::memory_order_acquire);
    const std::uint64_t generation = stampede::detail::fork_generation();
    if (p->generation() == generation) [[likely]] {
      return *p;
    }
    auto fresh = std::make_unique<Pool>(generation);
    if (pool.compare_exchange_strong(p, fresh.get(), std::memory_order_acq_rel, std::memory_order_acquire)) {
      p->abandon_after_fork();
      return *fresh.release();
    }
    return *p;  // another thread of the child replaced it first
  }

  // Borrows a connection for one scope and gives it back (or closes it) at the end.
  class Borrowed {
   public:
    explicit Borrowed(Impl& impl)
        : pool_(impl.current_pool()), c_(pool_.borrow(impl.endpoint, impl.options, impl.address)) {}
    ~Borrowed() { pool_.give_back(c_); }
    Borrowed(const Borrowed&) = delete;
    Borrowed& operator=(const Borrowed&) = delete;
    redisContext* get() const noexcept { return c_.context; }

   private:
    Pool& pool_;
    Pooled c_;
  };

  const Endpoint endpoint;
  const ClientOptions options;
  const std::string address;
  std::atomic<Pool*> pool;
};

namespace {
void validate(const ClientOptions& options) {
  if (options.pool_size == 0)
    throw std::invalid_argument("stampede::redis::ClientOptions.pool_size must be >= 1");
  if (options.connect_timeout.count() < 0 || options.command_timeout.count() < 0 ||
      options.borrow_timeout.count() < 0 || options.keepalive_interval.count() < 0) {
    throw std::invalid_argument("stampede::redis::ClientOptions: durations must be >= 0");
  }
}
}  // namespace

std::shared_ptr<Client> Client::create(std::string_view url, ClientOptions options) {
  validate(options);
  return std::shared_ptr<Client>(new Client(std::make_unique<Impl>(parse_url(url), options)));
}

std::shared_ptr<Client> Client::connect(std::string_view url, ClientOptions options) {
  std::shared_ptr<Client> client = create(url, options);
  // Check the server and the credentials now, so a wrong URL fails here and not on first use
  // (a server with requirepass answers NOAUTH to a client that sent no password).
  try {
    client->command({"PING"});
  } catch (const reply_error& e) {
    throw backend_error("redis " + client->address() +
                        ": the server refused PING (password needed?): " + e.server_message());
  }
  return client;
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

Reply Client::command(std::span<const std::string_view> argv) {
  if (argv.empty()) throw std::invalid_argument("stampede::redis::Client::command: empty argv");
  Reply r;
  {
    Impl::Borrowed c(*impl_);
    r = run(c.get(), argv, impl_->address);
  }
  if (r.type == Reply::Type::error) throw_reply_error(impl_->address, argv[0], r);
  return r;
}

Reply Client::eval(const Script& script, std::span<const std::string_view> keys,
                   std::span<const std::string_view> args) {
  const std::string numkeys = std::to_string(keys.size());
  std::vector<std::string_view> argv;
  argv.reserve(3 + keys.size() + args.size());
  argv.push_back("EVALSHA");
  argv.push_back(script.sha1());
  argv.push_back(numkeys);
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  Reply r;
  {
    Impl::Borrowed c(*impl_);
    r = run(c.get(), argv, impl_->address);
    if (r.type == Reply::Type::error && r.str.starts_with("NOSCRIPT")) {
      argv[0] = "EVAL";
      argv[1] = script.source();
      r = run(c.get(), argv, impl_->address);
    }
  }
  if (r.type == Reply::Type::error) throw_reply_error(impl_->address, "script", r);
  return r;
}

std::unique_ptr<Connection> Client::open_connection() const {
  ContextPtr c = open_context(impl_->endpoint, impl_->options, impl_->address);
  return std::unique_ptr<Connection>(new Connection(c.release()));
}

const ClientOptions& Client::options() const noexcept { return impl_->options; }
const Endpoint& Client::endpoint() const noexcept { return impl_->endpoint; }
const std::string& Client::address() const noexcept { return impl_->address; }

std::size_t Client::open_connections() const { return impl_->current_pool().open(); }

}  // namespace stampede::redis
