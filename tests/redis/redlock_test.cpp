// tests/redis/redlock_test.cpp: Redlock over three independent redis-server processes.
#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <memory>
#include <optional>
#include <stampede/redis/redis.hpp>
#include <stampede/stampede.hpp>
#include <string>
#include <thread>
#include <vector>

#include "instances.hpp"  // RedisStore<int>, Cache<int>, ...: compiled once
#include "redis_server.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using stampede::redis::Client;
using stampede::redis::Redlock;

// The nodes' answers are waited for 500 ms, not the default 50 ms: on a loaded machine (the test
// suite beside three builds) a live loopback node can take longer than 50 ms to be scheduled, and
// a missed answer fails an acquire that these tests expect to succeed. What they test (majorities,
// fences, a hung or a down node) does not depend on how long a node is waited for.
const stampede::redis::RedlockOptions kOptions{.node_timeout = 500ms};

class RedlockTest : public ::testing::Test {
 protected:
  RedlockTest() {
    for (int i = 0; i < 3; ++i) {
      servers_.push_back(std::make_unique<redis_test::RedisServer>());
      clients_.push_back(Client::connect(servers_.back()->url(), {.connect_timeout = 500ms}));
    }
  }
  std::vector<std::unique_ptr<redis_test::RedisServer>> servers_;
  std::vector<std::shared_ptr<Client>> clients_;
};

TEST_F(RedlockTest, MajorityGrantsAndExcludes) {
  Redlock a(clients_, "stampede:", kOptions), b(clients_, "stampede:", kOptions);
  EXPECT_EQ(a.quorum(), 2u);
  auto t = a.try_acquire("k", 10s);
  ASSERT_TRUE(t);
  EXPECT_FALSE(b.try_acquire("k", 10s));
  EXPECT_TRUE(a.renew("k", t->token, 10s));
  EXPECT_TRUE(a.release("k", t->token));
  auto u = b.try_acquire("k", 10s);
  ASSERT_TRUE(u);
  EXPECT_GT(u->fence, t->fence);
  EXPECT_TRUE(b.release("k", u->token));
}

TEST_F(RedlockTest, AMinorityHoldingTheKeyDoesNotBlockAndIsUndone) {
  // Another holder has the key on one node only: we still get a majority.
  ASSERT_EQ(clients_[0]->command({"SET", "stampede:lock:{k}", "foreign", "NX", "PX", "60000"}).str, "OK");
  Redlock lock(clients_, "stampede:", kOptions);
  auto t = lock.try_acquire("k", 10s);
  ASSERT_TRUE(t);
  EXPECT_TRUE(lock.release("k", t->token));
  // On two nodes: no majority, and what we took on the third is given back. try_acquire may
  // return as soon as the two holders answered; a grant by the third after that is released by
  // the worker that received it.
  ASSERT_EQ(clients_[1]->command({"SET", "stampede:lock:{k}", "foreign", "NX", "PX", "60000"}).str, "OK");
  EXPECT_FALSE(lock.try_acquire("k", 10s));
  EXPECT_TRUE(stampede_test::eventually([&] {
    return clients_[2]->command({"EXISTS", "stampede:lock:{k}"}).integer == 0;
  }));
}

TEST_F(RedlockTest, SurvivesOneNodeDownAndFailsClearlyWithTwo) {
  Redlock lock(clients_, "stampede:", kOptions);
  servers_[0]->kill();
  auto t = lock.try_acquire("k", 10s);
  ASSERT_TRUE(t);
  EXPECT_TRUE(lock.release("k", t->token));
  servers_[1]->kill();
  EXPECT_THROW((void)lock.try_acquire("k", 10s), stampede::backend_error);
  EXPECT_THROW((void)lock.bump_fence("k"), stampede::backend_error);
}

TEST_F(RedlockTest, StartsWithANodeDownAndTheNodeJoinsWhenItStarts) {
  servers_[2]->kill();
  Redlock lock({clients_[0], clients_[1], Client::create(servers_[2]->url(), {.connect_timeout = 500ms})},
               "stampede:", kOptions);
  auto t = lock.try_acquire("k", 10s);
  ASSERT_TRUE(t) << "a majority is up";
  EXPECT_TRUE(lock.release("k", t->token));
  servers_[2]->start();
  auto u = lock.try_acquire("k", 10s);
  ASSERT_TRUE(u);
  EXPECT_GT(u->fence, t->fence);
  // The third node takes part now (its answer may come a moment after the majority's).
  auto third = Client::connect(servers_[2]->url());
  EXPECT_TRUE(stampede_test::eventually([&] {
    return third->command({"GET", "stampede:lock:{k}"}).str == u->token;
  }));
  EXPECT_TRUE(lock.release("k", u->token));
}

TEST_F(RedlockTest, FencesGrowAcrossDifferentMajorities) {
  Redlock lock(clients_, "stampede:", kOptions);
  std::uint64_t last = 0;
  // Each round a different node is down, so consecutive majorities differ.
  for (int round = 0; round < 3; ++round) {
    servers_[round]->kill();
    for (int i = 0; i < 3; ++i) {
      auto t = lock.try_acquire("k", 10s);
      ASSERT_TRUE(t) << "round " << round;
      EXPECT_GT(t->fence, last);
      last = t->fence;
      EXPECT_TRUE(lock.release("k", t->token));
    }
    const std::uint64_t bumped = lock.bump_fence("k");
    EXPECT_GT(bumped, last);
    last = bumped;
    servers_[round]->start();  // empty again: no persistence (a restarted node forgets)
  }
}

TEST_F(RedlockTest, ReleaseWakesASubscriber) {
  Redlock lock(clients_, "stampede:", kOptions);
  auto t = lock.try_acquire("k", 10s);
  ASSERT_TRUE(t);
  auto sub = lock.subscribe("k");
  EXPECT_TRUE(lock.release("k", t->token));
  EXPECT_TRUE(sub->wait_until(std::chrono::steady_clock::now() + 60s));
}

TEST_F(RedlockTest, AHungNodeDoesNotTurnWaitersIntoLoaders) {
  // Several "processes" (each its own Clients, Redlock and Cache) stampede one key while one of the
  // three lock nodes hangs. The values live on a fourth server. A call to the hung node answers
  // only after its client's command_timeout, 60 s, longer than the callers' wait_timeout, 30 s:
  // a Redlock that waited for that node would turn every waiter into a loader, and one that does
  // not wait for it leaves 30 s for the one load, which a loaded machine meets.
  constexpr int kCaches = 5;
  const std::string prefix = redis_test::unique_prefix();
  std::vector<std::unique_ptr<stampede::Cache<std::string>>> caches;
  for (int i = 0; i < kCaches; ++i) {
    std::vector<std::shared_ptr<Client>> nodes;
    for (auto& s : servers_) nodes.push_back(Client::connect(s->url(), {.command_timeout = 60s}));
    auto store = std::make_shared<stampede::redis::RedisStore<std::string>>(
        Client::connect(redis_test::shared_server().url()), prefix);
    auto lock = std::make_shared<Redlock>(nodes, prefix, kOptions);
    caches.push_back(std::make_unique<stampede::Cache<std::string>>(
        stampede::CacheOptions{.lock_ttl = 60s, .wait_timeout = 30s},
        stampede::Backend<std::string>{store, lock, "redlock"}));
  }
  // The store's server has never fenced "hot", so it would refuse the first write (see
  // WithAStoreOnAnotherServerAKeysFirstWriteIsRefusedVisiblyAndTheNextLoadIsStored); an
  // invalidate makes its fence hash, which vouches for every fence the lock draws after it.
  caches[0]->invalidate("hot");
  servers_[0]->pause();
  redis_test::ResumeOnExit resume(*servers_[0]);  // before the caches go: their calls may hang on it

  std::atomic<int> loads{0};
  // The loader returns once every other cache has found the lock held, so that they all wait.
  auto others_contended = [&](std::size_t self) {
    for (std::size_t j = 0; j < caches.size(); ++j) {
      if (j != self && caches[j]->stats().lock_contended == 0 && caches[j]->stats().loads == 0) return false;
    }
    return true;
  };
  std::latch start(kCaches);
  std::vector<std::thread> threads;
  std::vector<std::string> values(kCaches);
  for (int i = 0; i < kCaches; ++i) {
    threads.emplace_back([&, i] {
      const auto self = static_cast<std::size_t>(i);
      start.arrive_and_wait();
      values[self] = caches[self]->get_or_compute("hot", [&] {
        loads.fetch_add(1);
        stampede_test::eventually([&] { return others_contended(self); });
        return "loaded by " + std::to_string(i);
      });
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(loads.load(), 1) << "waiters timed out behind the hung node and loaded themselves";
  for (const auto& v : values) EXPECT_EQ(v, values[0]);
}

// The lock's fences are drawn on the lock's nodes, which the store's server never saw: for a key
// it holds no fence hash for, the store cannot tell a fence drawn now from one drawn before it lost
// the hash (docs/wire-format.md, "Fences"), so it refuses the first write and makes the hash. The
// refusal is counted and reported, every caller still gets the value, and the next load (whose
// fence is drawn after the hash was made) is stored. The same holds for Cache::put.
TEST_F(RedlockTest, WithAStoreOnAnotherServerAKeysFirstWriteIsRefusedVisiblyAndTheNextLoadIsStored) {
  const std::string prefix = redis_test::unique_prefix();
  auto store = std::make_shared<stampede::redis::RedisStore<int>>(redis_test::shared_client(), prefix);
  auto lock = std::make_shared<Redlock>(clients_, prefix, kOptions);
  std::vector<std::string> rejected;
  stampede::CacheOptions options{.ttl = 60s};
  options.on_event = [&](const stampede::Event& e) {
    if (e.type == stampede::EventType::stale_write_rejected) rejected.emplace_back(e.key);
  };
  stampede::Cache<int> cache(options, stampede::Backend<int>{store, lock, "redlock"});
  int loads = 0;
  auto load = [&] { return ++loads; };
  EXPECT_EQ(cache.get_or_compute("k", load), 1);
  EXPECT_EQ(cache.stats().stale_writes_rejected, 1u);
  EXPECT_EQ(rejected, std::vector<std::string>{"k"});
  EXPECT_FALSE(cache.get("k")) << "the first write of a key the store never fenced was stored";
  EXPECT_EQ(cache.get_or_compute("k", load), 2);
  EXPECT_EQ(cache.get_or_compute("k", load), 2) << "the second load was not stored";
  EXPECT_EQ(loads, 2);

  // put() is refused the same way, and tries once more with a new fence, which the fence hash the
  // refused write made vouches for: a put() that returns has stored its value.
  cache.put("p", 7);
  EXPECT_EQ(cache.stats().stale_writes_rejected, 2u);
  EXPECT_EQ(cache.get("p"), std::optional<int>(7));
  cache.put("p", 8);
  EXPECT_EQ(cache.get("p"), std::optional<int>(8));

  cache.invalidate("i");  // makes the store's fence hash for "i": its first load is stored
  EXPECT_EQ(cache.get_or_compute("i", [] { return 9; }), 9);
  EXPECT_EQ(cache.get("i"), std::optional<int>(9));
  EXPECT_EQ(cache.stats().stale_writes_rejected, 2u);
}

TEST_F(RedlockTest, SubscribeAnswersAndAReleaseWakesTheWaiterWhileANodeHangs) {
  Redlock lock(clients_, "stampede:", kOptions);
  std::vector<std::shared_ptr<Client>> others;
  for (auto& server : servers_) others.push_back(Client::connect(server->url()));
  Redlock other(others, "stampede:", kOptions);
  servers_[0]->pause();
  redis_test::ResumeOnExit resume(*servers_[0]);
  auto t = other.try_acquire("k", 10s);
  ASSERT_TRUE(t);
  auto sub = lock.subscribe("k");  // another node confirms; the hung one does not hold it up
  EXPECT_TRUE(other.release("k", t->token));
  EXPECT_TRUE(sub->wait_until(std::chrono::steady_clock::now() + stampede_test::kHangGuard));
}

TEST(RedlockOptions, RejectsBadNodeTimeoutsTtlsAndNodesWithoutTimeouts) {
  auto client = redis_test::shared_client();
  EXPECT_THROW(Redlock({client}, "p:", {.node_timeout = 0ms}), std::invalid_argument);
  Redlock lock({client}, redis_test::unique_prefix(), {.node_timeout = 100ms});
  EXPECT_THROW((void)lock.try_acquire("k", 999ms), std::invalid_argument) << "ttl below 10 x node_timeout";
  EXPECT_THROW((void)lock.renew("k", "token", 500ms), std::invalid_argument);
  auto t = lock.try_acquire("k", 1s);
  ASSERT_TRUE(t);
  EXPECT_TRUE(lock.release("k", t->token));
  const std::string url = redis_test::shared_server().url();
  EXPECT_THROW(Redlock({Client::create(url, {.command_timeout = 0ms})}), std::invalid_argument);
  EXPECT_THROW(Redlock({Client::create(url, {.connect_timeout = 0ms})}), std::invalid_argument);
}

}  // namespace
