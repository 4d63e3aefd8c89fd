#include "stampede/redis/redlock.hpp"

#include <algorithm>
#include <stdexcept>

#include "scripts.hpp"
#include "stampede/detail/token.hpp"
#include "stampede/redis/detail/wire.hpp"

namespace stampede::redis {
namespace {

void check_key(std::string_view key) {
  if (key.empty()) throw std::invalid_argument("stampede::redis::Redlock: key must not be empty");
}

[[noreturn]] void no_majority(std::size_t answered, std::size_t n, const std::string& last) {
  throw backend_error("stampede::redis::Redlock: only " + std::to_string(answered) + " of " +
                      std::to_string(n) + " nodes answered (need a majority); last error: " + last);
}

}  // namespace

Redlock::Redlock(std::vector<std::shared_ptr<Client>> nodes, std::string prefix, RedlockOptions options)
    : prefix_(std::move(prefix)), options_(options) {
  if (nodes.empty()) throw std::invalid_argument("stampede::redis::Redlock: needs at least one node");
  if (!(options_.clock_drift_factor >= 0 && options_.clock_drift_factor < 1) ||
      options_.drift_floor.count() < 0) {
    throw std::invalid_argument("stampede::redis::Redlock: bad RedlockOptions");
  }
  for (auto& n : nodes) {
    if (!n) throw std::invalid_argument("stampede::redis::Redlock: a node is null");
    nodes_.push_back(std::make_unique<RedisTokenLock>(std::move(n), prefix_));
  }
}

Redlock::~Redlock() = default;

std::uint64_t Redlock::raise_fence(std::string_view key, std::uint64_t fence,
                                   const std::vector<std::size_t>& on) {
  std::size_t raised = 0;
  std::string last;
  for (std::size_t i : on) {
    try {
      detail::raise_fence(*nodes_[i]->client(), prefix_, key, fence);
      ++raised;
    } catch (const backend_error& e) {
      last = e.what();
    }
  }
  if (raised < quorum()) no_majority(raised, nodes_.size(), last);
  return fence;
}

std::optional<LockToken> Redlock::try_acquire(std::string_view key, std::chrono::milliseconds ttl) {
  check_key(key);
  if (ttl.count() <= 0) throw std::invalid_argument("stampede::redis::Redlock: ttl must be > 0");
  const std::string token = stampede::detail::random_token();
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::size_t> granted;
  std::uint64_t fence = 0;
  std::size_t answered = 0;
  std::string last;
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    try {
      const std::optional<std::uint64_t> f =
          detail::acquire_lock(*nodes_[i]->client(), prefix_, key, token, ttl);
      ++answered;
      if (f) {
        granted.push_back(i);
        fence = std::max(fence, *f);
      }
    } catch (const backend_error& e) {
      last = e.what();
    }
  }
  auto undo = [&] {
    for (std::size_t i : granted) {
      try {
        nodes_[i]->release(key, token);
      } catch (const backend_error&) {
        // it expires by itself
      }
    }
  };
  const auto drift =
      std::chrono::duration_cast<std::chrono::milliseconds>(ttl * options_.clock_drift_factor) +
      options_.drift_floor;
  const auto elapsed = std::chrono::steady_clock::now() - start;
  if (granted.size() >= quorum() && elapsed + drift < ttl) {
    try {
      raise_fence(key, fence, granted);
      return LockToken{token, fence};
    } catch (const backend_error&) {
      undo();
      throw;
    }
  }
  undo();
  if (answered < quorum()) no_majority(answered, nodes_.size(), last);
  return std::nullopt;
}

bool Redlock::release(std::string_view key, std::string_view token) {
  check_key(key);
  std::size_t released = 0, answered = 0;
  std::string last;
  std::vector<std::size_t> not_held;
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    try {
      if (nodes_[i]->release(key, token)) {
        ++released;
      } else {
        not_held.push_back(i);
      }
      ++answered;
    } catch (const backend_error& e) {
      last = e.what();
    }
  }
  // Wake waiters subscribed on nodes where the lock was not held (they listen on one node only).
  if (released > 0) {
    for (std::size_t i : not_held) {
      try {
        nodes_[i]->notify(key);
      } catch (const backend_error&) {
      }
    }
  }
  if (released == 0 && answered < quorum()) no_majority(answered, nodes_.size(), last);
  return released >= quorum();
}

bool Redlock::renew(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) {
  check_key(key);
  std::size_t renewed = 0, answered = 0;
  std::string last;
  for (auto& n : nodes_) {
    try {
      if (n->renew(key, token, ttl)) ++renewed;
      ++answered;
    } catch (const backend_error& e) {
      last = e.what();
    }
  }
  if (renewed >= quorum()) return true;
  if (answered < quorum()) no_majority(answered, nodes_.size(), last);
  return false;
}

std::uint64_t Redlock::bump_fence(std::string_view key) {
  check_key(key);
  std::vector<std::size_t> answered;
  std::uint64_t fence = 0;
  std::string last;
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    try {
      fence = std::max(fence, nodes_[i]->bump_fence(key));
      answered.push_back(i);
    } catch (const backend_error& e) {
      last = e.what();
    }
  }
  if (answered.size() < quorum()) no_majority(answered.size(), nodes_.size(), last);
  return raise_fence(key, fence, answered);
}

std::unique_ptr<Subscription> Redlock::subscribe(std::string_view key) {
  check_key(key);
  std::string last;
  for (auto& n : nodes_) {
    try {
      return n->subscribe(key);
    } catch (const backend_error& e) {
      last = e.what();
    }
  }
  throw backend_error("stampede::redis::Redlock: no node to subscribe to; last error: " + last);
}

void Redlock::notify(std::string_view key) {
  check_key(key);
  std::size_t answered = 0;
  std::string last;
  for (auto& n : nodes_) {
    try {
      n->notify(key);
      ++answered;
    } catch (const backend_error& e) {
      last = e.what();
    }
  }
  if (answered == 0) no_majority(0, nodes_.size(), last);
}

}  // namespace stampede::redis
