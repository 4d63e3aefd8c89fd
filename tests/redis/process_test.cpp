// tests/redis/process_test.cpp: several processes against one Redis (child processes of this binary,
// see main.cpp): one load in total for a stampede; a paused lock holder cannot overwrite newer data.
#include <gtest/gtest.h>
#include <signal.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <stampede/redis/redis.hpp>
#include <stampede/stampede.hpp>
#include <string>
#include <vector>

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

}  // namespace
