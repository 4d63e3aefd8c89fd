// tests/redis/async_process_test.cpp: async callers (stampede/asio.hpp) in several processes against
// one Redis. Four child processes of this binary (main.cpp: --child async_waiters) each run 100
// coroutines on an io_context of 2 threads; this process holds the key's lock and loads; every
// coroutine of every child gets that value (the children's leaders woken by the release), and no
// child loads.
#include <gtest/gtest.h>

#include <algorithm>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/use_awaitable.hpp>
#include <atomic>
#include <future>
#include <iostream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stampede/asio.hpp>
#include <stampede/redis/redis.hpp>
#include <stampede/stampede.hpp>
#include <string>
#include <thread>
#include <vector>

#include "instances.hpp"  // RedisStore<std::string>, Cache<std::string>: compiled once
#include "redis_server.hpp"
#include "support/test_support.hpp"

using namespace std::chrono_literals;

namespace redis_test {

// async_waiters URL PREFIX KEY CALLERS: CALLERS coroutines on 2 io threads call
// async_get_or_compute on KEY after "go"; prints "waiting" once its flight's leader met the held
// lock, then {"loads":N,"served":N,"errors":N,"values":[the distinct values]}.
int child_async_waiters(const std::vector<std::string>& a) {
  auto client = stampede::redis::Client::connect(a.at(0));
  stampede::Cache<std::string> cache({.ttl = 60s, .lock_ttl = 60s, .wait_timeout = 60s},
                                     stampede::redis::backend<std::string>(client, a.at(1)));
  const std::string key = a.at(2);
  const int callers = std::stoi(a.at(3));
  std::atomic<int> loads{0}, served{0}, errors{0};
  std::mutex mu;
  std::vector<std::string> values;
  asio::io_context io;
  for (int i = 0; i < callers; ++i) {
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          auto load = [&] { return ++loads, std::string("loaded by a child"); };
          try {
            std::string v =
                co_await stampede::asio::async_get_or_compute(cache, key, load, asio::use_awaitable);
            ++served;
            std::lock_guard l(mu);
            if (std::find(values.begin(), values.end(), v) == values.end()) values.push_back(v);
          } catch (...) {
            ++errors;
          }
        },
        asio::detached);
  }
  std::cout << "ready" << std::endl;
  std::string line;
  if (!std::getline(std::cin, line) || line != "go") return 2;
  std::thread second([&] { io.run(); });
  std::thread first([&] { io.run(); });
  if (!stampede_test::eventually([&] { return cache.stats().lock_contended >= 1; })) return 5;
  std::cout << "waiting" << std::endl;
  first.join();
  second.join();
  std::cout << nlohmann::json{{"loads", loads.load()},
                              {"served", served.load()},
                              {"errors", errors.load()},
                              {"values", values}}
                   .dump()
            << std::endl;
  return 0;
}

}  // namespace redis_test

namespace {

TEST(RedisAsyncProcesses, AsyncWaitersInFourProcessesAreWokenByAnotherProcesssLoad) {
  constexpr int kProcesses = 4;
  constexpr int kCallers = 100;
  const std::string url = redis_test::shared_server().url();
  const std::string prefix = redis_test::unique_prefix();
  stampede::Cache<std::string> holder(
      {.ttl = 60s, .lock_ttl = 60s, .wait_timeout = 60s},
      stampede::redis::backend<std::string>(redis_test::shared_client(), prefix));
  stampede_test::Gate entered, release;
  stampede_test::OpenOnExit release_on_exit(release);
  auto held = std::async(std::launch::async, [&] {
    return holder.get_or_compute("hot", [&] {
      entered.open();
      release.wait();
      return std::string("loaded by the holder");
    });
  });
  ASSERT_TRUE(entered.wait_for());
  std::vector<std::unique_ptr<redis_test::Child>> children;
  for (int i = 0; i < kProcesses; ++i) {
    children.push_back(std::make_unique<redis_test::Child>(
        std::vector<std::string>{"async_waiters", url, prefix, "hot", std::to_string(kCallers)}));
  }
  for (auto& c : children) ASSERT_EQ(c->read_line(), "ready");
  for (auto& c : children) c->send("go");
  for (auto& c : children) ASSERT_EQ(c->read_line(), "waiting");  // each child's leader met the lock
  release.open();
  EXPECT_EQ(held.get(), "loaded by the holder");
  for (auto& c : children) {
    const std::string line = c->read_line();
    ASSERT_FALSE(line.empty());
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["loads"].get<int>(), 0);
    EXPECT_EQ(j["served"].get<int>(), kCallers);
    EXPECT_EQ(j["errors"].get<int>(), 0);
    EXPECT_EQ(j["values"], nlohmann::json::array({"loaded by the holder"}));
    EXPECT_EQ(c->wait(), 0);
  }
}

}  // namespace
