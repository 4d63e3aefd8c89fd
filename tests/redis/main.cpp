// tests/redis/main.cpp: runs the Redis tests, or (with --child) one of the child processes that
// the multi-process tests start from this same binary.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <stampede/redis/redis.hpp>
#include <stampede/stampede.hpp>
#include <string>
#include <thread>
#include <vector>

#include "redis_server.hpp"

namespace {

using namespace std::chrono_literals;

std::string read_stdin_line() {
  std::string line;
  std::getline(std::cin, line);
  return line;
}

// stampede URL PREFIX KEY DB_MS WORKERS: waits for "go", then WORKERS threads call
// get_or_compute on KEY; prints {"loads":N,"values":[...]}.
int child_stampede(const std::vector<std::string>& a) {
  auto client = stampede::redis::Client::connect(a.at(0));
  stampede::Cache<std::string> cache({.ttl = 60s, .lock_ttl = 5s, .wait_timeout = 60s},
                                     stampede::redis::backend<std::string>(client, a.at(1)));
  const std::string key = a.at(2);
  const auto db = std::chrono::milliseconds(std::stoi(a.at(3)));
  const int workers = std::stoi(a.at(4));
  std::atomic<int> loads{0};
  std::cout << "ready" << std::endl;
  if (read_stdin_line() != "go") return 2;
  std::vector<std::string> values(static_cast<std::size_t>(workers));
  std::vector<std::thread> threads;
  for (int i = 0; i < workers; ++i) {
    threads.emplace_back([&, i] {
      values[static_cast<std::size_t>(i)] = cache.get_or_compute(key, [&] {
        loads.fetch_add(1);
        std::this_thread::sleep_for(db);
        return "loaded by " + std::to_string(::getpid());
      });
    });
  }
  for (auto& t : threads) t.join();
  std::cout << nlohmann::json{{"loads", loads.load()}, {"values", values}}.dump() << std::endl;
  return 0;
}

// paused URL PREFIX KEY: loads KEY with a loader that prints "loading" and returns "old" only
// after a line arrives on stdin; prints {"result":..., "stale_writes_rejected":N}.
int child_paused(const std::vector<std::string>& a) {
  auto client = stampede::redis::Client::connect(a.at(0));
  stampede::Cache<std::string> cache({.ttl = 60s, .lock_ttl = 300ms, .wait_timeout = 60s},
                                     stampede::redis::backend<std::string>(client, a.at(1)));
  std::string result = cache.get_or_compute(a.at(2), [] {
    std::cout << "loading" << std::endl;
    read_stdin_line();
    return std::string("old");
  });
  std::cout << nlohmann::json{{"result", result},
                              {"stale_writes_rejected", cache.stats().stale_writes_rejected}}
                   .dump()
            << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  char exe[4096];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  redis_test::self_path = n > 0 ? std::string(exe, static_cast<std::size_t>(n)) : std::string(argv[0]);
  if (argc >= 3 && std::string(argv[1]) == "--child") {
    const std::string mode = argv[2];
    std::vector<std::string> args(argv + 3, argv + argc);
    try {
      if (mode == "stampede") return child_stampede(args);
      if (mode == "paused") return child_paused(args);
    } catch (const std::exception& e) {
      std::cout << "error: " << e.what() << std::endl;
      return 3;
    }
    return 4;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
