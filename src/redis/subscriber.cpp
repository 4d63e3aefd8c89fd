#include "subscriber.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <condition_variable>
#include <unordered_map>
#include <utility>
#include <vector>

#include "pubsub_reader.hpp"
#include "stampede/detail/fork.hpp"
#include "stampede/detail/string_hash.hpp"
#include "stampede/detail/thread_annotations.hpp"
#include "stampede/errors.hpp"

namespace stampede::redis::detail {
namespace {

// A glob pattern matching exactly the strings that start with `literal`.
std::string glob_prefix(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('*');
  return out;
}

}  // namespace

struct Subscriber::Hub {
  struct Slot {
    std::uint64_t generation = 0;
    std::size_t refs = 0;
  };
  enum class State { idle, connecting, connected, stopped };

  stampede::detail::Mutex mu;
  std::condition_variable_any cv;
  std::unordered_map<std::string, Slot, stampede::detail::StringHash, stampede::detail::StringEqual> slots
      STAMPEDE_GUARDED_BY(mu);
  std::uint64_t epoch STAMPEDE_GUARDED_BY(mu) = 0;     // bumped when the connection is lost
  std::uint64_t attempts STAMPEDE_GUARDED_BY(mu) = 0;  // finished connection attempts
  State state STAMPEDE_GUARDED_BY(mu) = State::idle;
  bool want_connect STAMPEDE_GUARDED_BY(mu) = true;
  std::string last_error STAMPEDE_GUARDED_BY(mu);
  FdIdentity socket STAMPEDE_GUARDED_BY(mu);  // of the pub/sub connection, while connected
};

class Subscriber::Sub final : public Subscription {
 public:
  Sub(std::shared_ptr<Hub> hub, std::string key, std::uint64_t generation, std::uint64_t epoch)
      : hub_(std::move(hub)),
        key_(std::move(key)),
        generation_(generation),
        epoch_(epoch),
        fork_generation_(stampede::detail::fork_generation()) {}
  ~Sub() override {
    if (forked()) return;  // the hub belongs to an abandoned Subscriber: do not touch it
    stampede::detail::MutexLock l(hub_->mu);
    auto it = hub_->slots.find(key_);
    if (it != hub_->slots.end() && --it->second.refs == 0) hub_->slots.erase(it);
  }
  bool wait_until(std::chrono::steady_clock::time_point deadline) override {
    // Made before fork(): nothing would ever wake it here. A spurious wake-up makes the caller
    // re-check and subscribe again, which reaches this process's own Subscriber.
    if (forked()) return true;
    stampede::detail::MutexLock l(hub_->mu);
    return hub_->cv.wait_until(l, deadline, [this]() STAMPEDE_NO_THREAD_SAFETY_ANALYSIS {
      if (hub_->epoch != epoch_ || hub_->state == Hub::State::stopped) return true;
      auto it = hub_->slots.find(key_);
      return it != hub_->slots.end() && it->second.generation != generation_;
    });
  }

 private:
  bool forked() const noexcept { return fork_generation_ != stampede::detail::fork_generation(); }

  std::shared_ptr<Hub> hub_;
  std::string key_;
  std::uint64_t generation_;
  std::uint64_t epoch_;
  std::uint64_t fork_generation_;
};

Subscriber::Subscriber(std::shared_ptr<Client> client, const std::string& prefix)
    : client_(std::move(client)),
      channel_prefix_(prefix + "done:{"),
      pattern_(glob_prefix(channel_prefix_)),
      hub_(std::make_shared<Hub>()),
      generation_(stampede::detail::fork_generation()) {
  if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) {
    throw backend_error("stampede::redis: cannot create a pipe for the pub/sub reader");
  }
  wake_ids_[0] = FdIdentity(wake_[0]);
  wake_ids_[1] = FdIdentity(wake_[1]);
  thread_ = std::thread([this] { run(); });
}

Subscriber::~Subscriber() {
  {
    stampede::detail::MutexLock l(hub_->mu);
    hub_->state = Hub::State::stopped;
  }
  hub_->cv.notify_all();
  const char byte = 'x';
  [[maybe_unused]] ssize_t n = ::write(wake_[1], &byte, 1);
  thread_.join();
  ::close(wake_[0]);
  ::close(wake_[1]);
}

// In a fork()ed child, instead of the destructor (which would join a thread that does not exist
// here): closes the child's copies of the pipe and, unless a dead thread holds the hub's lock,
// of the pub/sub socket, and keeps the rest, never destroyed. Never blocks.
// Leaves the mutex locked on purpose, which the thread-safety analysis cannot follow.
void Subscriber::abandon_after_fork() noexcept STAMPEDE_NO_THREAD_SAFETY_ANALYSIS {
  if (hub_->mu.try_lock()) {
    hub_->socket.close_if_unchanged();
    // Left locked: Subscriptions from before the fork do not take it (Sub::forked()).
  }
  wake_ids_[0].close_if_unchanged();
  wake_ids_[1].close_if_unchanged();
  stampede::detail::keep_abandoned(this);
}

std::unique_ptr<Subscription> Subscriber::subscribe(std::string_view key) {
  const ClientOptions& o = client_->options();
  // Bounded even when the client's timeouts are 0 (= no limit): a waiter must not hang here.
  auto budget = o.connect_timeout + o.command_timeout;
  if (o.connect_timeout.count() == 0 || o.command_timeout.count() == 0) budget = std::chrono::seconds(30);
  const auto deadline = std::chrono::steady_clock::now() + budget + std::chrono::milliseconds(100);
  stampede::detail::MutexLock l(hub_->mu);
  if (hub_->state != Hub::State::connected) {
    const std::uint64_t attempt = hub_->attempts;
    hub_->want_connect = true;
    hub_->cv.notify_all();
    hub_->cv.wait_until(l, deadline, [&]() STAMPEDE_NO_THREAD_SAFETY_ANALYSIS {
      return hub_->state == Hub::State::connected || hub_->state == Hub::State::stopped ||
             (hub_->attempts != attempt && hub_->state != Hub::State::connecting);
    });
    if (hub_->state != Hub::State::connected) {
      throw backend_error("redis " + client_->address() + ": pub/sub connection for wake-ups failed: " +
                          (hub_->last_error.empty() ? std::string("timed out") : hub_->last_error));
    }
  }
  auto [it, inserted] = hub_->slots.try_emplace(std::string(key));
  ++it->second.refs;
  return std::make_unique<Sub>(hub_, std::string(key), it->second.generation, hub_->epoch);
}

void Subscriber::run() {
  for (;;) {
    {
      stampede::detail::MutexLock l(hub_->mu);
      hub_->cv.wait(l, [this]() STAMPEDE_NO_THREAD_SAFETY_ANALYSIS {
        return hub_->state == Hub::State::stopped || hub_->want_connect;
      });
      if (hub_->state == Hub::State::stopped) return;
      hub_->want_connect = false;
      hub_->state = Hub::State::connecting;
    }
    std::unique_ptr<Connection> conn;
    std::string error;
    try {
      conn = client_->open_connection();
      Reply r = conn->command({"PSUBSCRIBE", pattern_});
      if (r.type != Reply::Type::array || r.elements.empty() || r.elements[0].str != "psubscribe") {
        throw backend_error("PSUBSCRIBE was not confirmed: " + r.str);
      }
    } catch (const std::exception& e) {
      conn.reset();
      error = e.what();
    }
    {
      stampede::detail::MutexLock l(hub_->mu);
      ++hub_->attempts;
      if (hub_->state == Hub::State::stopped) return;
      hub_->state = conn ? Hub::State::connected : Hub::State::idle;
      hub_->last_error = error;
      if (conn) hub_->socket = FdIdentity(conn->fd());
    }
    hub_->cv.notify_all();
    if (!conn) continue;
    const bool stopped = read_until_lost(*conn);
    {
      stampede::detail::MutexLock l(hub_->mu);
      ++hub_->epoch;  // wake every waiter: messages may have been lost
      hub_->socket = FdIdentity();
      if (hub_->state == Hub::State::stopped || stopped) return;
      hub_->state = Hub::State::idle;
      // Reconnect at once, so that the waiters' next subscribe() finds it connected. If this
      // attempt fails, the next subscribe() asks for another (no retry loop against a dead
      // server).
      hub_->want_connect = true;
    }
    hub_->cv.notify_all();
  }
}

// Dispatches messages until the connection is lost or the Subscriber stops (pubsub_reader.hpp:
// the keepalive PINGs a silent connection and declares it lost when the PING goes unanswered).
// @return true when asked to stop, false when the connection was lost.
bool Subscriber::read_until_lost(Connection& conn) {
  std::string error;
  return read_pubsub_until_lost(
             conn, wake_[0], client_->options(),
             [this] {
               stampede::detail::MutexLock l(hub_->mu);
               return hub_->state == Hub::State::stopped;
             },
             [this](const Reply& m) { dispatch(m); }, error) == PubSubEnd::stopped;
}

void Subscriber::dispatch(const Reply& m) {
  // ["pmessage", pattern, channel, payload]; a keepalive's ["pong", ""] is ignored here.
  if (m.type != Reply::Type::array || m.elements.size() != 4 || m.elements[0].str != "pmessage") return;
  const std::string& channel = m.elements[2].str;
  if (!channel.starts_with(channel_prefix_) || !channel.ends_with("}")) return;
  std::string_view key(channel);
  key = key.substr(channel_prefix_.size(), key.size() - channel_prefix_.size() - 1);
  bool woke = false;
  {
    stampede::detail::MutexLock l(hub_->mu);
    auto it = hub_->slots.find(key);
    if (it != hub_->slots.end()) {
      ++it->second.generation;
      woke = true;
    }
  }
  if (woke) hub_->cv.notify_all();
}

}  // namespace stampede::redis::detail
