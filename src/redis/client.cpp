#include "stampede/redis/client.hpp"

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <utility>
#include <vector>

#include "connection_pool.hpp"
#include "stampede/detail/fork.hpp"

namespace stampede::redis {
namespace {

[[noreturn]] void throw_reply_error(const std::string& address, std::string_view command, const Reply& r) {
  throw reply_error("redis " + address + ": " + std::string(command) + ": " + r.str, r.str);
}

}  // namespace

// ---- Script ------------------------------------------------------------------------------------

Script::Script(std::string source) : source_(std::move(source)) {}

Script::Script(const Script& other) : source_(other.source_) { remember_sha1(other.sha1()); }

Script::~Script() { delete sha1_.load(std::memory_order_acquire); }

std::string_view Script::sha1() const noexcept {
  const std::string* digest = sha1_.load(std::memory_order_acquire);
  return digest != nullptr ? std::string_view(*digest) : std::string_view();
}

void Script::remember_sha1(std::string_view digest) const {
  if (digest.empty() || sha1_.load(std::memory_order_acquire) != nullptr) return;
  auto fresh = std::make_unique<const std::string>(digest);
  const std::string* expected = nullptr;
  if (sha1_.compare_exchange_strong(expected, fresh.get(), std::memory_order_acq_rel)) {
    static_cast<void>(fresh.release());  // sha1_ owns it now
  }
}

// ---- Client ------------------------------------------------------------------------------------

struct Client::Impl {
  Impl(Endpoint e, ClientOptions o)
      : endpoint(std::move(e)),
        options(o),
        address(to_string(endpoint)),
        pool(new detail::ConnectionPool(stampede::detail::fork_generation())) {}

  ~Impl() {
    detail::ConnectionPool* p = pool.load(std::memory_order_acquire);
    if (p->generation() == stampede::detail::fork_generation()) {
      delete p;
    } else {
      p->abandon_after_fork();  // a child that never used the client
    }
  }

  // The pool of this process: in a fork()ed child, the first call replaces the parent's.
  detail::ConnectionPool& current_pool() {
    detail::ConnectionPool* p = pool.load(std::memory_order_acquire);
    const std::uint64_t generation = stampede::detail::fork_generation();
    if (p->generation() == generation) [[likely]] {
      return *p;
    }
    auto fresh = std::make_unique<detail::ConnectionPool>(generation);
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
    ~Borrowed() { pool_.give_back(std::move(c_)); }
    Borrowed(const Borrowed&) = delete;
    Borrowed& operator=(const Borrowed&) = delete;
    Connection& get() const noexcept { return *c_.connection; }

   private:
    detail::ConnectionPool& pool_;
    detail::PooledConnection c_;
  };

  const Endpoint endpoint;
  const ClientOptions options;
  const std::string address;
  std::atomic<detail::ConnectionPool*> pool;
  // The server refused SCRIPT LOAD (an ACL without it): scripts whose digest is unknown run by EVAL.
  std::atomic<bool> script_load_refused{false};
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
    r = c.get().command(argv);
  }
  if (r.type == Reply::Type::error) throw_reply_error(impl_->address, argv[0], r);
  return r;
}

Reply Client::eval(const Script& script, std::span<const std::string_view> keys,
                   std::span<const std::string_view> args) {
  const std::string numkeys = std::to_string(keys.size());
  std::vector<std::string_view> argv;
  argv.reserve(3 + keys.size() + args.size());
  argv.emplace_back("EVALSHA");
  argv.emplace_back();  // the digest, or the source for EVAL
  argv.push_back(numkeys);
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  Reply r;
  {
    Impl::Borrowed c(*impl_);
    Connection& connection = c.get();
    std::string_view sha1 = script.sha1();
    if (sha1.empty() && !impl_->script_load_refused.load(std::memory_order_relaxed)) {
      // The server names the script; keep the name, so that from now on only the digest travels.
      const Reply loaded = connection.command({"SCRIPT", "LOAD", script.source()});
      if (loaded.type == Reply::Type::string) {
        script.remember_sha1(loaded.str);
        sha1 = script.sha1();
      } else if (loaded.type == Reply::Type::error && loaded.str.starts_with("NOPERM")) {
        impl_->script_load_refused.store(true, std::memory_order_relaxed);
      }  // another error (e.g. the script does not compile): EVAL below reports it
    }
    bool done = false;
    if (!sha1.empty()) {
      argv[1] = sha1;
      r = connection.command(argv);
      // NOSCRIPT: the server restarted or flushed its scripts since; EVAL below loads it again.
      done = !(r.type == Reply::Type::error && r.str.starts_with("NOSCRIPT"));
    }
    if (!done) {
      argv[0] = "EVAL";
      argv[1] = script.source();
      r = connection.command(argv);
    }
  }
  if (r.type == Reply::Type::error) throw_reply_error(impl_->address, "script", r);
  return r;
}

std::unique_ptr<Connection> Client::open_connection() const {
  return Connection::open(impl_->endpoint, impl_->options.connect_timeout, impl_->options.command_timeout);
}

const ClientOptions& Client::options() const noexcept { return impl_->options; }
const Endpoint& Client::endpoint() const noexcept { return impl_->endpoint; }
const std::string& Client::address() const noexcept { return impl_->address; }

std::size_t Client::open_connections() const { return impl_->current_pool().open(); }

}  // namespace stampede::redis
