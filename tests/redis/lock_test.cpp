// tests/redis/lock_test.cpp: RedisTokenLock: the shared lock conformance suite plus Redis specifics
// (protocol interop, binary keys, SCRIPT FLUSH, reconnect of the pub/sub connection).
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <stampede/redis/redis.hpp>
#include <string>
#include <thread>

#include "conformance/lock_conformance.hpp"
#include "factory.hpp"
#include "redis_server.hpp"

namespace {

using namespace std::chrono_literals;
using redis_test::shared_client;
using redis_test::unique_prefix;
using stampede::redis::Client;
using stampede::redis::RedisTokenLock;

INSTANTIATE_TYPED_TEST_SUITE_P(Redis, LockConformance, redis_test::RedisFactory);

TEST(RedisTokenLock, UsesTheDocumentedKeysAndTheStandardProtocol) {
  auto client = shared_client();
  const std::string prefix = unique_prefix();
  RedisTokenLock lock(client, prefix);
  auto t = lock.try_acquire("item:1", 10s);
  ASSERT_TRUE(t);
  // The lock key holds the token, with a TTL (PX), as `SET key token NX PX ttl` leaves it.
  EXPECT_EQ(client->command({"GET", prefix + "lock:{item:1}"}).str, t->token);
  const long long pttl = client->command({"PTTL", prefix + "lock:{item:1}"}).integer;
  EXPECT_GT(pttl, 0);
  EXPECT_LE(pttl, 10000);
  // The fence counter sits in the same hash slot ({item:1} hash tag).
  EXPECT_EQ(client->command({"HGET", prefix + "fence:{item:1}", "next"}).str, std::to_string(t->fence));
  EXPECT_TRUE(lock.release("item:1", t->token));
  EXPECT_EQ(client->command({"EXISTS", prefix + "lock:{item:1}"}).integer, 0);
}

TEST(RedisTokenLock, ExcludesAndIsExcludedByAnotherClientUsingTheSameProtocol) {
  auto client = shared_client();
  const std::string prefix = unique_prefix();
  RedisTokenLock lock(client, prefix);
  const std::string key = prefix + "lock:{job}";
  // "Another service" (plain commands, as redis-py's Lock sends them) takes the lock first.
  ASSERT_EQ(client->command({"SET", key, "foreign-token", "NX", "PX", "60000"}).str, "OK");
  EXPECT_FALSE(lock.try_acquire("job", 10s));
  EXPECT_FALSE(lock.release("job", "some-other-token"));
  EXPECT_EQ(client->command({"GET", key}).str, "foreign-token");
  ASSERT_EQ(client->command({"DEL", key}).integer, 1);
  // Now we hold it and the other service's SET NX fails.
  auto t = lock.try_acquire("job", 10s);
  ASSERT_TRUE(t);
  EXPECT_TRUE(client->command({"SET", key, "foreign-token", "NX", "PX", "60000"}).is_nil());
  EXPECT_TRUE(lock.release("job", t->token));
}

TEST(RedisTokenLock, BinaryKeysLockAndWakeIndependently) {
  auto lock = std::make_shared<RedisTokenLock>(shared_client(), unique_prefix());
  const std::string a("key with spaces\nand a newline", 29);
  const std::string b(std::string("nul\0inside", 10));
  const std::string c(std::string("nul\0other", 9));
  auto ta = lock->try_acquire(a, 10s);
  auto tb = lock->try_acquire(b, 10s);
  auto tc = lock->try_acquire(c, 10s);
  ASSERT_TRUE(ta && tb && tc);
  EXPECT_FALSE(lock->try_acquire(b, 10s));
  auto sub = lock->subscribe(b);
  EXPECT_TRUE(lock->release(b, tb->token));
  EXPECT_TRUE(sub->wait_until(std::chrono::steady_clock::now() + stampede_test::kHangGuard));
  EXPECT_FALSE(lock->try_acquire(c, 10s)) << "releasing one NUL key freed another";
  EXPECT_TRUE(lock->release(a, ta->token));
  EXPECT_TRUE(lock->release(c, tc->token));
}

TEST(RedisTokenLock, SignalForAnotherKeyDoesNotCountAsOurs) {
  auto lock = std::make_shared<RedisTokenLock>(shared_client(), unique_prefix());
  auto mine = lock->subscribe("mine");
  auto other = lock->subscribe("other");
  lock->notify("other");
  EXPECT_TRUE(other->wait_until(std::chrono::steady_clock::now() + stampede_test::kHangGuard));
  // "mine" got nothing: a wait on it ends by its (short) deadline, not by the other key's signal.
  EXPECT_FALSE(mine->wait_until(std::chrono::steady_clock::now() + 50ms));
}

TEST(RedisTokenLock, WorksAcrossScriptFlush) {
  auto client = shared_client();
  RedisTokenLock lock(client, unique_prefix());
  auto t = lock.try_acquire("k", 10s);
  ASSERT_TRUE(t);
  client->command({"SCRIPT", "FLUSH"});
  EXPECT_TRUE(lock.renew("k", t->token, 10s));  // EVALSHA -> NOSCRIPT -> EVAL
  client->command({"SCRIPT", "FLUSH"});
  EXPECT_TRUE(lock.release("k", t->token));
  client->command({"SCRIPT", "FLUSH"});
  auto u = lock.try_acquire("k", 10s);
  ASSERT_TRUE(u);
  EXPECT_GT(u->fence, t->fence);
  EXPECT_TRUE(lock.release("k", u->token));
}

TEST(RedisTokenLock, ServerDownIsBackendErrorAndItRecoversAfterRestart) {
  redis_test::RedisServer server;
  auto client = Client::connect(server.url());
  auto lock = std::make_shared<RedisTokenLock>(client, "p:");
  auto sub = lock->subscribe("k");
  server.kill();
  // The waiter is woken when the pub/sub connection drops (it must re-check, not sleep on).
  EXPECT_TRUE(sub->wait_until(std::chrono::steady_clock::now() + stampede_test::kHangGuard));
  EXPECT_THROW((void)lock->try_acquire("k", 10s), stampede::backend_error);
  EXPECT_THROW((void)lock->subscribe("k"), stampede::backend_error);
  EXPECT_THROW(lock->notify("k"), stampede::backend_error);
  server.start();
  auto t = lock->try_acquire("k", 10s);
  ASSERT_TRUE(t);
  auto sub2 = lock->subscribe("k");  // reconnects the pub/sub connection
  EXPECT_TRUE(lock->release("k", t->token));
  EXPECT_TRUE(sub2->wait_until(std::chrono::steady_clock::now() + stampede_test::kHangGuard));
}

TEST(RedisTokenLock, FencesKeepGrowingAfterRedisLosesTheFenceHash) {
  auto client = shared_client();
  const std::string prefix = unique_prefix();
  RedisTokenLock lock(client, prefix);
  for (int i = 0; i < 5; ++i) {
    auto t = lock.try_acquire("k", 10s);
    ASSERT_TRUE(t);
    EXPECT_TRUE(lock.release("k", t->token));
  }
  // A holder from before the loss, still loading.
  auto before = lock.try_acquire("k", 10s);
  ASSERT_TRUE(before);
  // Redis loses the fence hash (FLUSHALL, a restart without persistence, eviction, a cleanup job).
  ASSERT_EQ(client->command({"DEL", prefix + "fence:{k}"}).integer, 1);
  EXPECT_GT(lock.bump_fence("k"), before->fence) << "a put or invalidate after the loss got a lower fence";
  EXPECT_TRUE(lock.release("k", before->token));
  ASSERT_EQ(client->command({"DEL", prefix + "fence:{k}"}).integer, 1);
  auto after = lock.try_acquire("k", 10s);
  ASSERT_TRUE(after);
  EXPECT_GT(after->fence, before->fence) << "a holder after the loss got a lower fence than one before it";
  EXPECT_TRUE(lock.release("k", after->token));
}

TEST(RedisTokenLock, TheFenceHashHasATtlOfAtLeastTheLockTtl) {
  auto client = shared_client();
  const std::string prefix = unique_prefix();
  RedisTokenLock lock(client, prefix);
  auto t = lock.try_acquire("k", 30s);
  ASSERT_TRUE(t);
  const long long after_acquire = client->command({"PTTL", prefix + "fence:{k}"}).integer;
  EXPECT_GE(after_acquire, 30000) << "-1 means no TTL: one fence hash per key forever";
  EXPECT_TRUE(lock.renew("k", t->token, 600s));
  EXPECT_GE(client->command({"PTTL", prefix + "fence:{k}"}).integer, 600000) << "renew did not extend it";
  EXPECT_TRUE(lock.release("k", t->token));
  lock.bump_fence("other");
  EXPECT_GT(client->command({"PTTL", prefix + "fence:{other}"}).integer, 0);
}

TEST(RedisTokenLock, AWaiterIsWokenWhenThePubSubServerStopsAnsweringAndItReconnectsAfter) {
  redis_test::RedisServer server;  // a server of its own: the test stops it
  auto client = Client::connect(server.url(), {.command_timeout = 500ms});
  auto lock = std::make_shared<RedisTokenLock>(client, "p:");
  auto sub = lock->subscribe("k");
  {
    // SIGSTOP: the connection stays open (no RST, no EOF), as in a network cut.
    server.pause();
    redis_test::ResumeOnExit resume(server);
    EXPECT_TRUE(sub->wait_until(std::chrono::steady_clock::now() + stampede_test::kHangGuard))
        << "the waiter was not woken: the dead pub/sub connection went unnoticed";
  }
  // Subscriptions work again once the server answers.
  RedisTokenLock other(Client::connect(server.url()), "p:");
  ASSERT_TRUE(stampede_test::eventually([&] {
    try {
      auto again = lock->subscribe("k");
      other.notify("k");
      return again->wait_until(std::chrono::steady_clock::now() + 5s);
    } catch (const stampede::backend_error&) {
      return false;  // still reconnecting
    }
  }));
}

TEST(RedisTokenLock, RejectsAPrefixThatBreaksHashTags) {
  EXPECT_THROW(RedisTokenLock(shared_client(), "a{b"), std::invalid_argument);
  EXPECT_THROW(RedisTokenLock(nullptr, "p:"), std::invalid_argument);
}

}  // namespace
