#include "stampede/redis/redlock.hpp"

#include <algorithm>
#include <condition_variable>
#include <stdexcept>
#include <string_view>
#include <type_traits>
#include <utility>

#include "node_workers.hpp"
#include "stampede/detail/random.hpp"
#include "stampede/detail/thread_annotations.hpp"
#include "wire.hpp"

namespace stampede::redis {
namespace {

using steady = std::chrono::steady_clock;

// try_acquire and renew refuse a TTL below this many node_timeouts: an acquire takes up to two
// rounds of node_timeout, and what is left of the TTL after them must be worth having.
constexpr int kMinTtlInNodeTimeouts = 10;

[[noreturn]] void no_majority(std::size_t answered, std::size_t n, const std::string& last) {
  throw backend_error("stampede::redis::Redlock: only " + std::to_string(answered) + " of " +
                      std::to_string(n) + " nodes answered (need a majority); last error: " + last);
}

// What the nodes answered to one call, as far as the caller waited.
template <class R>
struct Tally {
  std::vector<std::optional<R>> answers;  // per node; empty: failed, or no answer in time
  std::size_t answered = 0;               // nodes that answered
  std::size_t failed = 0;                 // nodes that failed (an error, or not called in time)
  std::string last_error;

  [[nodiscard]] std::size_t pending() const noexcept { return answers.size() - answered - failed; }
  template <class Pred>
  [[nodiscard]] std::size_t count(Pred pred) const {
    return static_cast<std::size_t>(std::count_if(answers.begin(), answers.end(),
                                                  [&](const std::optional<R>& a) { return a && pred(*a); }));
  }
};

}  // namespace

// One call to every node at once, shared by the caller and the node workers. A worker records its
// node's answer or failure; the caller waits until it can decide, every node has finished, or the
// deadline, and then closes the round: answers that come later are dropped (they are "late").
// Thread-safe.
template <class R>
class Redlock::Round {
 public:
  Round(std::size_t nodes, steady::time_point deadline, bool skip_once_given_up)
      : deadline_(deadline), skip_once_given_up_(skip_once_given_up) {
    tally_.answers.resize(nodes);
  }

  // @return true if a call not yet started should not start any more: past the deadline, or
  // (for calls whose late answers would have to be undone, e.g. an acquire) closed with late
  // answers not standing.
  [[nodiscard]] bool too_late() {
    if (steady::now() >= deadline_) return true;
    if (!skip_once_given_up_) return false;
    stampede::detail::MutexLock l(mu_);
    return closed_ && !keep_late_;
  }

  // What became of an answer.
  enum class Fate { counted, late_kept, late_dropped };

  // Records `node`'s answer. An answer after the round closed is late: the caller decided without
  // it, and said at closing whether late answers stand (late_kept, e.g. a grant of a lock it
  // took) or not (late_dropped, e.g. a grant of a lock it gave up: the worker must undo it).
  Fate answer(std::size_t node, R value) {
    {
      stampede::detail::MutexLock l(mu_);
      if (closed_) return keep_late_ ? Fate::late_kept : Fate::late_dropped;
      tally_.answers[node] = std::move(value);
      ++tally_.answered;
    }
    cv_.notify_all();
    return Fate::counted;
  }

  void fail(std::string_view error) {
    {
      stampede::detail::MutexLock l(mu_);
      if (closed_) return;
      ++tally_.failed;
      tally_.last_error = error;
    }
    cv_.notify_all();
  }

  // As below, with late answers not standing (most calls have nothing to undo).
  template <class Decided>
  Tally<R> wait(Decided decided) {
    return wait(decided, [](const Tally<R>& /*tally*/) { return false; });
  }

  // Waits until `decided(tally)`, every node has finished, or the deadline; then closes the
  // round, with late answers standing if `keep_late(tally)`. Nodes that had not answered by then
  // count as failed.
  template <class Decided, class KeepLate>
  Tally<R> wait(Decided decided, KeepLate keep_late) {
    stampede::detail::MutexLock l(mu_);
    cv_.wait_until(l, deadline_, [&]() STAMPEDE_NO_THREAD_SAFETY_ANALYSIS {
      return tally_.pending() == 0 || decided(tally_);
    });
    closed_ = true;
    keep_late_ = keep_late(tally_);
    Tally<R> out = std::move(tally_);
    if (out.pending() > 0) {
      out.failed += out.pending();
      if (out.last_error.empty()) out.last_error = "no answer within node_timeout";
    }
    return out;
  }

 private:
  const steady::time_point deadline_;
  const bool skip_once_given_up_;
  stampede::detail::Mutex mu_;
  std::condition_variable_any cv_;
  Tally<R> tally_ STAMPEDE_GUARDED_BY(mu_);
  bool closed_ STAMPEDE_GUARDED_BY(mu_) = false;
  bool keep_late_ STAMPEDE_GUARDED_BY(mu_) = false;
};

namespace {
// For call_all(): nothing to undo.
struct NoUndo {
  template <class R>
  void operator()(RedisTokenLock& /*node*/, const R& /*late*/) const {}
};
}  // namespace

Redlock::Redlock(std::vector<std::shared_ptr<Client>> nodes, std::string prefix, RedlockOptions options)
    : prefix_(std::move(prefix)), options_(options) {
  if (nodes.empty()) throw std::invalid_argument("stampede::redis::Redlock: needs at least one node");
  if (!(options_.clock_drift_factor >= 0 && options_.clock_drift_factor < 1) ||
      options_.drift_floor.count() < 0) {
    throw std::invalid_argument("stampede::redis::Redlock: bad RedlockOptions");
  }
  if (options_.node_timeout.count() <= 0) {
    throw std::invalid_argument("stampede::redis::RedlockOptions.node_timeout must be > 0");
  }
  for (auto& n : nodes) {
    if (!n) throw std::invalid_argument("stampede::redis::Redlock: a node is null");
    const ClientOptions& o = n->options();
    if (o.connect_timeout.count() <= 0 || o.command_timeout.count() <= 0) {
      // A call to a hung node would then hold a worker thread (and the destructor) forever.
      throw std::invalid_argument(
          "stampede::redis::Redlock: a node's ClientOptions need connect_timeout and command_timeout > 0");
    }
    subscribe_budget_ = std::max(subscribe_budget_, o.connect_timeout + o.command_timeout);
    workers_.push_back(std::make_unique<detail::NodeWorkers>(o.pool_size));
    nodes_.push_back(std::make_unique<RedisTokenLock>(std::move(n), prefix_));
  }
  subscribe_budget_ += std::chrono::milliseconds(100);
}

Redlock::~Redlock() {
  workers_.clear();  // joins the workers first: their calls use nodes_
}

void Redlock::check_ttl(std::chrono::milliseconds ttl) const {
  if (ttl < options_.node_timeout * kMinTtlInNodeTimeouts) {
    throw std::invalid_argument("stampede::redis::Redlock: ttl must be at least " +
                                std::to_string(kMinTtlInNodeTimeouts) + " x node_timeout (" +
                                std::to_string(options_.node_timeout.count()) + " ms)");
  }
}

template <class R, class Call, class Undo>
std::shared_ptr<Redlock::Round<R>> Redlock::call_all(Call call, steady::time_point deadline,
                                                     bool skip_once_given_up, Undo undo_late,
                                                     const std::vector<bool>* only) {
  auto round = std::make_shared<Round<R>>(nodes_.size(), deadline, skip_once_given_up);
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (only != nullptr && !(*only)[i]) {
      round->fail("not called");
      continue;
    }
    RedisTokenLock* node = nodes_[i].get();
    const bool posted = workers_[i]->post([round, call, undo_late, node, i] {
      if (round->too_late()) {
        round->fail("not called: the node was busy past node_timeout");
        return;
      }
      try {
        R answer = call(*node);
        if constexpr (std::is_copy_constructible_v<R>) {
          const R copy = answer;
          if (round->answer(i, std::move(answer)) == Round<R>::Fate::late_dropped) undo_late(*node, copy);
        } else {
          static_cast<void>(undo_late);  // an answer that cannot be copied has nothing to undo
          round->answer(i, std::move(answer));
        }
      } catch (const std::exception& e) {
        round->fail(e.what());
      }
    });
    if (!posted) round->fail("not called: too many calls wait for this node (hung?)");
  }
  return round;
}

void Redlock::undo(std::string_view key, const std::string& token, const std::vector<bool>& granted) {
  auto round = call_all<bool>(
      [this, k = std::string(key), token](RedisTokenLock& node) {
        try {
          return detail::release_lock(*node.client(), prefix_, k, token);
        } catch (const std::exception&) {
          return false;  // it expires by itself
        }
      },
      steady::now() + options_.node_timeout, false, NoUndo{}, &granted);
  round->wait([](const Tally<bool>& /*so_far*/) { return false; });  // every granted node, or the deadline
}

std::uint64_t Redlock::raise_fence(std::string_view key, std::uint64_t fence) {
  const std::size_t q = quorum();
  auto round = call_all<bool>(
      [this, k = std::string(key), fence](RedisTokenLock& node) {
        detail::raise_fence(*node.client(), prefix_, k, fence);
        return true;
      },
      steady::now() + options_.node_timeout, false, NoUndo{});
  const Tally<bool> t = round->wait([q](const Tally<bool>& so_far) {
    return so_far.answered >= q || so_far.answered + so_far.pending() < q;
  });
  if (t.answered < q) no_majority(t.answered, nodes_.size(), t.last_error);
  return fence;
}

std::optional<LockToken> Redlock::do_try_acquire(std::string_view key, std::chrono::milliseconds ttl) {
  check_ttl(ttl);
  const std::string token = stampede::detail::random_token();
  const auto start = steady::now();
  const std::size_t q = quorum();
  auto granted = [](std::uint64_t fence) { return fence != 0; };
  // Answer per node: the fence, or 0 if the lock is held there.
  auto round = call_all<std::uint64_t>(
      [this, k = std::string(key), token, ttl](RedisTokenLock& node) {
        return detail::acquire_lock(*node.client(), prefix_, k, token, ttl).value_or(0);
      },
      start + options_.node_timeout, true,
      // A grant that comes after this call gave up: released by the same worker, right after the
      // acquire (a release from another thread could overtake it).
      [this, k = std::string(key), token](RedisTokenLock& node, std::uint64_t late_fence) {
        if (late_fence == 0) return;
        try {
          detail::release_lock(*node.client(), prefix_, k, token);
        } catch (const std::exception&) {
          // it expires by itself
        }
      });
  const Tally<std::uint64_t> t = round->wait(
      [&](const Tally<std::uint64_t>& so_far) {
        const std::size_t g = so_far.count(granted);
        const bool taken = g >= q;
        const bool held = so_far.answered >= q && g + so_far.pending() < q;  // a majority said so
        const bool unreachable = so_far.answered + so_far.pending() < q;     // no majority can answer
        return taken || held || unreachable;
      },
      // A late grant stands only if this call took the lock (release() then releases it everywhere).
      [&](const Tally<std::uint64_t>& so_far) { return so_far.count(granted) >= q; });
  std::uint64_t fence = 0;
  std::vector<bool> took(nodes_.size());
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    const std::optional<std::uint64_t>& a = t.answers[i];
    if (a && granted(*a)) {
      took[i] = true;
      fence = std::max(fence, *a);
    }
  }
  const auto drift =
      std::chrono::duration_cast<std::chrono::milliseconds>(ttl * options_.clock_drift_factor) +
      options_.drift_floor;
  if (t.count(granted) >= q && steady::now() - start + drift < ttl) {
    try {
      raise_fence(key, fence);
      return LockToken{token, fence};
    } catch (const backend_error&) {
      undo(key, token, took);
      throw;
    }
  }
  undo(key, token, took);
  if (t.answered < q) no_majority(t.answered, nodes_.size(), t.last_error);
  return std::nullopt;
}

bool Redlock::do_release(std::string_view key, std::string_view token) {
  const std::size_t q = quorum();
  auto released = [](bool r) { return r; };
  auto round = call_all<bool>(
      [this, k = std::string(key), tok = std::string(token)](RedisTokenLock& node) {
        const bool r = detail::release_lock(*node.client(), prefix_, k, tok);
        // A waiter listens on one node only: wake those of nodes where the lock was not held too.
        if (!r) detail::publish(*node.client(), prefix_, k, "released");
        return r;
      },
      steady::now() + options_.node_timeout, false, NoUndo{});
  const Tally<bool> t = round->wait([&](const Tally<bool>& so_far) { return so_far.count(released) >= q; });
  const std::size_t n = t.count(released);
  if (n == 0 && t.answered < q) no_majority(t.answered, nodes_.size(), t.last_error);
  return n >= q;
}

bool Redlock::do_renew(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) {
  check_ttl(ttl);
  const std::size_t q = quorum();
  auto renewed = [](bool r) { return r; };
  auto round = call_all<bool>(
      [this, k = std::string(key), tok = std::string(token), ttl](RedisTokenLock& node) {
        return detail::renew_lock(*node.client(), prefix_, k, tok, ttl);
      },
      steady::now() + options_.node_timeout, false, NoUndo{});
  const Tally<bool> t = round->wait([&](const Tally<bool>& so_far) { return so_far.count(renewed) >= q; });
  if (t.count(renewed) >= q) return true;
  if (t.answered < q) no_majority(t.answered, nodes_.size(), t.last_error);
  return false;
}

std::uint64_t Redlock::do_bump_fence(std::string_view key) {
  const std::size_t q = quorum();
  auto round = call_all<std::uint64_t>(
      [this, k = std::string(key)](RedisTokenLock& node) {
        return detail::bump_fence(*node.client(), prefix_, k);
      },
      steady::now() + options_.node_timeout, false, NoUndo{});
  const Tally<std::uint64_t> t = round->wait([q](const Tally<std::uint64_t>& so_far) {
    return so_far.answered >= q || so_far.answered + so_far.pending() < q;
  });
  if (t.answered < q) no_majority(t.answered, nodes_.size(), t.last_error);
  std::uint64_t fence = 0;
  for (const auto& a : t.answers) {
    if (a) fence = std::max(fence, *a);
  }
  return raise_fence(key, fence);
}

std::unique_ptr<Subscription> Redlock::do_subscribe(std::string_view key) {
  auto round = call_all<std::unique_ptr<Subscription>>(
      [k = std::string(key)](RedisTokenLock& node) { return node.subscribe(k); },
      steady::now() + subscribe_budget_, false, NoUndo{});
  Tally<std::unique_ptr<Subscription>> t =
      round->wait([](const Tally<std::unique_ptr<Subscription>>& so_far) { return so_far.answered >= 1; });
  for (auto& a : t.answers) {
    if (a) return std::move(*a);
  }
  throw backend_error("stampede::redis::Redlock: no node to subscribe to; last error: " + t.last_error);
}

void Redlock::do_notify(std::string_view key) {
  auto round = call_all<bool>(
      [this, k = std::string(key)](RedisTokenLock& node) {
        detail::publish(*node.client(), prefix_, k, "stored");
        return true;
      },
      steady::now() + options_.node_timeout, false, NoUndo{});
  const Tally<bool> t = round->wait([](const Tally<bool>& so_far) { return so_far.answered >= 1; });
  if (t.answered == 0) no_majority(0, nodes_.size(), t.last_error);
}

}  // namespace stampede::redis
