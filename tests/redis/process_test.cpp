// tests/redis/process_test.cpp: several processes against one Redis (child processes of this binary,
// see main.cpp): one load in total for a stampede; a paused lock holder cannot overwrite newer data;
// a value re-armed by fail-safe in one process is served by the others.
#include <gtest/gtest.h>
#include <signal.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <stampede/redis/redis.hpp>
#include <stampede/stampede.hpp>
#include <string>
#include <vector>

#include "instances.hpp"  // RedisStore<int>, Cache<int>, ...: compiled once
#include "redis_server.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using redis_test::Child;

TEST(RedisProcesses, SeveralProcessesAtOnceMakeOneLoadInTotal) {
  constexpr int kProcesses = 4;
  constexpr int kWorkers = 4;
  const std::string url = redis_test::shared_server().url();
  const std::string prefix = redis_test::unique_prefix();
  std::vector<std::unique_ptr<Child>> children;
  for (int i = 0; i < kProcesses; ++i) {
    children.push_back(std::make_unique<Child>(
        std::vector<std::string>{"stampede", url, prefix, "hot", "300", std::to_string(kWorkers)}));
  }
  for (auto& c : children) ASSERT_EQ(c->read_line(), "ready");
  for (auto& c : children) c->send("go");  // as close to "at once" as processes get
  int loads = 0;
  std::string first_value;
  for (auto& c : children) {
    const std::string line = c->read_line();
    ASSERT_FALSE(line.empty());
    const auto j = nlohmann::json::parse(line);
    loads += j["loads"].get<int>();
    for (const auto& v : j["values"]) {
      if (first_value.empty()) first_value = v.get<std::string>();
      EXPECT_EQ(v.get<std::string>(), first_value) << "callers got different values";
    }
    EXPECT_EQ(c->wait(), 0);
  }
  EXPECT_EQ(loads, 1) << kProcesses << " processes x " << kWorkers << " workers";
}

TEST(RedisProcesses, APausedLockHolderCannotOverwriteANewerValue) {
  auto client = redis_test::shared_client();
  const std::string url = redis_test::shared_server().url();
  const std::string prefix = redis_test::unique_prefix();
  Child holder({"paused", url, prefix, "k"});
  ASSERT_EQ(holder.read_line(), "loading");  // it holds the lock (300 ms lease, watchdog) and loads
  holder.signal(SIGSTOP);                    // its watchdog stops too: the lease runs out
  ASSERT_TRUE(stampede_test::eventually([&] {
    return client->command({"EXISTS", prefix + "lock:{k}"}).integer == 0;
  })) << "the paused holder's lock never expired";

  // Another process (this one) loads and stores a newer value with a higher fence.
  stampede::Cache<std::string> cache({.ttl = 60s}, stampede::redis::backend<std::string>(client, prefix));
  EXPECT_EQ(cache.get_or_compute("k", [] { return std::string("new"); }), "new");

  holder.send("resume");
  holder.signal(SIGCONT);
  const auto report = nlohmann::json::parse(holder.read_line());
  EXPECT_EQ(holder.wait(), 0);
  EXPECT_EQ(report["result"], "old");             // the paused caller still gets what it loaded...
  EXPECT_EQ(report["stale_writes_rejected"], 1);  // ...but its write was refused
  EXPECT_EQ(cache.get("k").value_or("<missing>"), "new");
}

// Fail-safe across processes: the last good value is past its TTL; process A's load fails and
// A serves the value and re-arms it in Redis for the throttle; process B then gets it as a fresh
// hit without calling its loader (whose database is up and would return "new").
TEST(RedisProcesses, AValueReArmedByFailSafeInOneProcessIsServedByTheOthersWithoutALoad) {
  const std::string url = redis_test::shared_server().url();
  const std::string prefix = redis_test::unique_prefix();
  {
    // Written with a clock two minutes behind: its 60 s TTL has ended by the real clock, while
    // fail_safe_max_age keeps it as the last good value for an hour.
    auto past = std::make_shared<stampede::ManualClock>(std::chrono::system_clock::now() - 2min);
    stampede::Cache<std::string> writer(
        {.ttl = 60s, .fail_safe_max_age = 1h, .fail_safe_throttle = 60s, .clock = past},
        stampede::redis::backend<std::string>(redis_test::shared_client(), prefix));
    ASSERT_EQ(writer.get_or_compute("k", [] { return std::string("last good"); }), "last good");
  }
  Child a({"failsafe", url, prefix, "k", "down"});
  const auto ja = nlohmann::json::parse(a.read_line());
  EXPECT_EQ(a.wait(), 0);
  ASSERT_TRUE(ja.contains("value")) << ja.dump();
  EXPECT_EQ(ja["value"], "last good") << ja.dump();
  EXPECT_EQ(ja["loads"], 1) << "process A's load should have been tried (and failed)";
  EXPECT_EQ(ja["fail_safe_served"], 1) << ja.dump();

  Child b({"failsafe", url, prefix, "k", "up"});
  const auto jb = nlohmann::json::parse(b.read_line());
  EXPECT_EQ(b.wait(), 0);
  ASSERT_TRUE(jb.contains("value")) << jb.dump();
  EXPECT_EQ(jb["value"], "last good") << "process B did not get the re-armed value: " << jb.dump();
  EXPECT_EQ(jb["loads"], 0) << "process B called its loader within the throttle";
}

}  // namespace
