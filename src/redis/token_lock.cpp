#include "stampede/redis/token_lock.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "stampede/detail/thread_annotations.hpp"
#include "stampede/detail/token.hpp"
#include "stampede/memory.hpp"
#include "stampede/redis/detail/wire.hpp"

namespace stampede::redis {
namespace {

void check_key(std::string_view key) {
  if (key.empty()) throw std::invalid_argument("stampede::redis::RedisTokenLock: key must not be empty");
}
void check_ttl(std::chrono::milliseconds ttl) {
  if (ttl.count() <= 0) throw std::invalid_argument("stampede::redis::RedisTokenLock: ttl must be > 0");
}

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

// ---- Subscriber: one PSUBSCRIBE connection and its reader thread ------------------------------

class RedisTokenLock::Subscriber {
 public:
  // Shared with every Subscription, so a Subscription may outlive the lock.
  struct Hub {
    struct Slot {
      std::uint64_t generation = 0;
      std::size_t refs = 0;
    };
    enum class State { idle, connecting, connected, stopped };

    stampede::detail::Mutex mu;
    std::condition_variable_any cv;
    std::unordered_map<std::string, Slot, stampede::detail::StringHash, std::equal_to<>> slots
        STAMPEDE_GUARDED_BY(mu);
    std::uint64_t epoch STAMPEDE_GUARDED_BY(mu) = 0;     // bumped when the connection is lost
    std::uint64_t attempts STAMPEDE_GUARDED_BY(mu) = 0;  // finished connection attempts
    State state STAMPEDE_GUARDED_BY(mu) = State::idle;
    bool want_connect STAMPEDE_GUARDED_BY(mu) = true;
    std::string last_error STAMPEDE_GUARDED_BY(mu);
  };

  class Sub final : public Subscription {
   public:
    Sub(std::shared_ptr<Hub> hub, std::string key, std::uint64_t generation, std::uint64_t epoch)
        : hub_(std::move(hub)), key_(std::move(key)), generation_(generation), epoch_(epoch) {}
    ~Sub() override {
      stampede::detail::MutexLock l(hub_->mu);
      auto it = hub_->slots.find(key_);
      if (it != hub_->slots.end() && --it->second.refs == 0) hub_->slots.erase(it);
    }
    bool wait_until(std::chrono::steady_clock::time_point deadline) override {
      stampede::detail::MutexLock l(hub_->mu);
      return hub_->cv.wait_until(l, deadline, [this]() STAMPEDE_NO_THREAD_SAFETY_ANALYSIS {
        if (hub_->epoch != epoch_ || hub_->state == Hub::State::stopped) return true;
        auto it = hub_->slots.find(key_);
        return it != hub_->slots.end() && it->second.generation != generation_;
      });
    }

   private:
    std::shared_ptr<Hub> hub_;
    std::string key_;
    std::uint64_t generation_;
    std::uint64_t epoch_;
  };

  Subscriber(std::shared_ptr<Client> client, std::string prefix)
      : client_(std::move(client)),
        channel_prefix_(prefix + "done:{"),
        pattern_(glob_prefix(channel_prefix_)),
        hub_(std::make_shared<Hub>()) {
    if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) {
      throw backend_error("stampede::redis: cannot create a pipe for the pub/sub reader");
    }
    thread_ = std::thread([this] { run(); });
  }

  ~Subscriber() {
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

  std::unique_ptr<Subscription> subscribe(std::string_view key) {
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

 private:
  void run() {
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
      }
      hub_->cv.notify_all();
      if (!conn) continue;
      const bool stopped = read_until_lost(*conn);
      {
        stampede::detail::MutexLock l(hub_->mu);
        ++hub_->epoch;  // wake every waiter: messages may have been lost
        if (hub_->state == Hub::State::stopped || stopped) return;
        hub_->state = Hub::State::idle;
      }
      hub_->cv.notify_all();
    }
  }

  // @return true when asked to stop, false when the connection was lost.
  bool read_until_lost(Connection& conn) {
    for (;;) {
      pollfd fds[2] = {{conn.fd(), POLLIN, 0}, {wake_[0], POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      if (fds[1].revents != 0) {
        char buf[16];
        while (::read(wake_[0], buf, sizeof buf) > 0) {
        }
        stampede::detail::MutexLock l(hub_->mu);
        if (hub_->state == Hub::State::stopped) return true;
      }
      if (fds[0].revents == 0) continue;
      std::vector<Reply> messages;
      try {
        messages = conn.read_available();
      } catch (const backend_error&) {
        return false;
      }
      for (const Reply& m : messages) dispatch(m);
    }
  }

  void dispatch(const Reply& m) {
    // ["pmessage", pattern, channel, payload]
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

  std::shared_ptr<Client> client_;
  std::string channel_prefix_;
  std::string pattern_;
  std::shared_ptr<Hub> hub_;
  int wake_[2] = {-1, -1};
  std::thread thread_;
};

// ---- RedisTokenLock ----------------------------------------------------------------------------

RedisTokenLock::RedisTokenLock(std::shared_ptr<Client> client, std::string prefix)
    : client_(std::move(client)), prefix_(std::move(prefix)) {
  if (!client_) throw std::invalid_argument("stampede::redis::RedisTokenLock: client must not be null");
  detail::check_prefix(prefix_);
  subscriber_ = std::make_unique<Subscriber>(client_, prefix_);
}

RedisTokenLock::~RedisTokenLock() = default;

std::optional<LockToken> RedisTokenLock::try_acquire(std::string_view key, std::chrono::milliseconds ttl) {
  check_key(key);
  check_ttl(ttl);
  std::string token = stampede::detail::random_token();
  const std::optional<std::uint64_t> fence = detail::acquire_lock(*client_, prefix_, key, token, ttl);
  if (!fence) return std::nullopt;
  return LockToken{std::move(token), *fence};
}

bool RedisTokenLock::release(std::string_view key, std::string_view token) {
  check_key(key);
  return detail::release_lock(*client_, prefix_, key, token);
}

bool RedisTokenLock::renew(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) {
  check_key(key);
  check_ttl(ttl);
  return detail::renew_lock(*client_, prefix_, key, token, ttl);
}

std::uint64_t RedisTokenLock::bump_fence(std::string_view key) {
  check_key(key);
  return detail::bump_fence(*client_, prefix_, key);
}

std::unique_ptr<Subscription> RedisTokenLock::subscribe(std::string_view key) {
  check_key(key);
  return subscriber_->subscribe(key);
}

void RedisTokenLock::notify(std::string_view key) {
  check_key(key);
  detail::publish(*client_, prefix_, key, "stored");
}

std::optional<std::string> RedisTokenLock::holder(std::string_view key) {
  check_key(key);
  Reply r = client_->command({"GET", detail::lock_key(prefix_, key)});
  if (r.type != Reply::Type::string) return std::nullopt;
  return std::move(r.str);
}

}  // namespace stampede::redis
