// tests/redis/acl_test.cpp: a Redis ACL user that may use keys and commands but no pub/sub channels
// (Redis 7's default for a new user: acl-pubsub-default resetchannels). Its waiters cannot
// subscribe for wake-ups; they must poll for the lock holder's value instead of loading.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <stampede/redis/redis.hpp>
#include <stampede/stampede.hpp>
#include <string>

#include "instances.hpp"  // RedisStore<int>, Cache<int>, ...: compiled once
#include "redis_server.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;

TEST(RedisAcl, UserWithoutChannelRightsWaitsByPollingAndLoadsOnce) {
  redis_test::RedisServer server;  // its own server: the ACL user is server-wide
  auto admin = stampede::redis::Client::connect(server.url());
  admin->command({"ACL", "SETUSER", "app", "on", ">app-secret", "~*", "+@all", "resetchannels"});
  const std::string url = "redis://app:app-secret@127.0.0.1:" + std::to_string(server.port());
  // The user can really not subscribe (a check of the setup, not of stampede).
  stampede::redis::RedisTokenLock probe(stampede::redis::Client::connect(url), "probe:");
  ASSERT_THROW((void)probe.subscribe("k"), stampede::backend_error);

  stampede::CacheOptions o;
  o.ttl = 60s;
  o.lock_ttl = 5s;
  o.wait_timeout = 60s;
  o.poll_interval = 20ms;
  // Two clients of the user: two processes sharing one Redis.
  stampede::Cache<std::string> first(
      o, stampede::redis::backend<std::string>(stampede::redis::Client::connect(url), "acl:"));
  stampede::Cache<std::string> second(
      o, stampede::redis::backend<std::string>(stampede::redis::Client::connect(url), "acl:"));
  stampede_test::Gate loading;
  stampede_test::Gate release_load;
  std::atomic<int> loads{0};
  auto a = std::async(std::launch::async, [&] {
    return first.get_or_compute("k", [&] {
      loads.fetch_add(1);
      loading.open();
      release_load.wait();
      return std::string("from first");
    });
  });
  std::future<std::string> b;
  stampede_test::OpenOnExit open_on_exit(release_load);  // runs before a and b are waited for
  ASSERT_TRUE(loading.wait_for()) << "the loader never ran";
  b = std::async(std::launch::async, [&] {
    return second.get_or_compute("k", [&] {
      loads.fetch_add(1);
      return std::string("from second");
    });
  });
  // The second cache found the lock held and could not subscribe.
  ASSERT_TRUE(stampede_test::eventually([&] { return second.stats().backend_errors >= 1; }));
  release_load.open();
  EXPECT_EQ(a.get(), "from first");
  EXPECT_EQ(b.get(), "from first") << "the waiter loaded instead of polling for the holder's value";
  EXPECT_EQ(loads.load(), 1);
  EXPECT_EQ(second.stats().loads, 0u);
  EXPECT_EQ(second.stats().coalesced, 1u);
  // The store script's PUBLISH is refused for this user after the value was written: that must
  // not turn a stored value into a reported failure.
  EXPECT_EQ(first.stats().store_failures, 0u) << "a stored value was reported as a failed store";
}

TEST(RedisAcl, PutAndReleaseOfAUserWithoutChannelRightsStoreAndReportNoFailure) {
  redis_test::RedisServer server;
  auto admin = stampede::redis::Client::connect(server.url());
  admin->command({"ACL", "SETUSER", "app", "on", ">app-secret", "~*", "+@all", "resetchannels"});
  const std::string url = "redis://app:app-secret@127.0.0.1:" + std::to_string(server.port());
  auto client = stampede::redis::Client::connect(url);
  stampede::CacheOptions o;
  o.ttl = 60s;
  stampede::Cache<std::string> cache(o, stampede::redis::backend<std::string>(client, "acl:"));
  // put(): the write happened, so it must not throw although nobody can be told by PUBLISH.
  EXPECT_NO_THROW(cache.put("k", "v"));
  EXPECT_EQ(cache.get("k"), "v");
  // release(): the lock is gone and the release reports that it was ours.
  stampede::redis::RedisTokenLock lock(client, "acl:");
  auto token = lock.try_acquire("job", 5s);
  ASSERT_TRUE(token);
  bool released = false;
  EXPECT_NO_THROW(released = lock.release("job", token->token));
  EXPECT_TRUE(released);
  EXPECT_FALSE(lock.holder("job").has_value());
}

}  // namespace
