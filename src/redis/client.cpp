#include "stampede/redis/client.hpp"

#include <poll.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <stdexcept>
#include <utility>
#include <vector>

#include "fd_identity.hpp"
#include "stampede/detail/fork.hpp"
#include "stampede/detail/thread_annotations.hpp"

namespace stampede::redis {
namespace {

[[noreturn]] void throw_reply_error(const std::string& address, std::string_view command, const Reply& r) {
  throw reply_error("redis " + address + ": " + std::string(command) + ": " + r.str, r.str);
}

// ---- pool --------------------------------------------------------------------------------------

// @return true if the socket has something to read (for an idle connection: EOF or an error).
bool readable(const Connection& c) noexcept {
  pollfd p{c.fd(), POLLIN, 0};
  return ::poll(&p, 1, 0) != 0;
}

// A pooled connection and the identity of its socket (to close it safely in a fork()ed child).
struct Pooled {
  std::unique_ptr<Connection> connection;
  detail::FdIdentity socket;
};

// The mutable state of a Client: its idle connections and how many are open. Thread-safe. Built
// for one fork generation; a child builds its own and abandons the parent's (see Client).
class Pool {
 public:
  explicit Pool(std::uint64_t generation) noexcept : generation_(generation) {}
  ~Pool() = default;
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
        Pooled c = std::move(idle_.back());
        idle_.pop_back();
        if (!readable(*c.connection)) return c;
        // An idle connection has no reply pending: readable means the server closed it (it
        // restarted, or dropped idle clients). Drop it instead of failing the caller's command.
        c.connection.reset();
        --open_;
      }
      if (open_ < options.pool_size) {
        ++open_;
        l.unlock();
        try {
          std::unique_ptr<Connection> c =
              Connection::open(endpoint, options.connect_timeout, options.command_timeout);
          const detail::FdIdentity socket(c->fd());
          l.lock();
          return Pooled{std::move(c), socket};
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
      if (!c.connection->broken()) {
        idle_.push_back(std::move(c));
      } else {
        doomed.swap(idle_);
        doomed.push_back(std::move(c));
        open_ -= doomed.size();
      }
    }
    cv_.notify_all();
    // `doomed` closes its connections here, outside the lock.
  }

  [[nodiscard]] std::size_t open() {
    stampede::detail::MutexLock l(mu_);
    return open_;
  }

  // For a pool inherited from the parent, in a fork()ed child that has replaced it: closes the
  // child's copies of the idle sockets, unless a thread of the parent held the lock at fork()
  // time (it does not exist here: then nothing is touched). Never blocks. The pool and its
  // connections are abandoned, never destroyed: the condition variable may have waiters that do
  // not exist either, and destroying a connection would close a descriptor number that may have
  // been reused meanwhile.
  // Leaves the mutex locked on purpose, which the thread-safety analysis cannot follow.
  void abandon_after_fork() noexcept STAMPEDE_NO_THREAD_SAFETY_ANALYSIS {
    if (mu_.try_lock()) {
      for (Pooled& c : idle_) {
        c.socket.close_if_unchanged();
        stampede::detail::keep_abandoned(c.connection.release());
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
  if (sha1_.compare_exchange_strong(expected, fresh.get(), std::memory_order_acq_rel)) fresh.release();
}

// ---- Client ------------------------------------------------------------------------------------

struct Client::Impl {
  Impl(Endpoint e, ClientOptions o)
      : endpoint(std::move(e)),
        options(o),
        address(to_string(endpoint)),
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
    ~Borrowed() { pool_.give_back(std::move(c_)); }
    Borrowed(const Borrowed&) = delete;
    Borrowed& operator=(const Borrowed&) = delete;
    Connection& get() const noexcept { return *c_.connection; }

   private:
    Pool& pool_;
    Pooled c_;
  };

  const Endpoint endpoint;
  const ClientOptions options;
  const std::string address;
  std::atomic<Pool*> pool;
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
  argv.push_back("EVALSHA");
  argv.push_back({});  // the digest, or the source for EVAL
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
