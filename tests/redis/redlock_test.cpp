// tests/redis/redlock_test.cpp: Redlock over three independent redis-server processes.
#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <memory>
#include <stampede/redis/redis.hpp>
#include <stampede/stampede.hpp>
#include <string>
#include <thread>
#include <vector>

#include "redis_server.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using stampede::redis::Client;
using stampede::redis::Redlock;

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
  Redlock a(clients_), b(clients_);
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
  Redlock lock(clients_);
  auto t = lock.try_acquire("k", 10s);
  ASSERT_TRUE(t);
  EXPECT_TRUE(lock.release("k", t->token));
  // On two nodes: no majority, and what we took on the third is given back.
  ASSERT_EQ(clients_[1]->command({"SET", "stampede:lock:{k}", "foreign", "NX", "PX", "60000"}).str, "OK");
  EXPECT_FALSE(lock.try_acquire("k", 10s));
  EXPECT_EQ(clients_[2]->command({"EXISTS", "stampede:lock:{k}"}).integer, 0);
}

TEST_F(RedlockTest, SurvivesOneNodeDownAndFailsClearlyWithTwo) {
  Redlock lock(clients_);
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
  Redlock lock({clients_[0], clients_[1], Client::create(servers_[2]->url(), {.connect_timeout = 500ms})});
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
  Redlock lock(clients_);
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
  Redlock lock(clients_);
  auto t = lock.try_acquire("k", 10s);
  ASSERT_TRUE(t);
  auto sub = lock.subscribe("k");
  EXPECT_TRUE(lock.release("k", t->token));
  EXPECT_TRUE(sub->wait_until(std::chrono::steady_clock::now() + 60s));
}

}  // namespace
