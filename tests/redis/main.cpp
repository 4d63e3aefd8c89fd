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
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "instances.hpp"  // RedisStore<int>, Cache<int>, ...: compiled once
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

// writer URL PREFIX: a plain Redis Cache<std::string> that runs one command per stdin line:
// "load K V" (get_or_compute with a loader returning V), "put K V", "invalidate K"; prints "done"
// after each, and exits on "quit" or EOF.
int child_writer(const std::vector<std::string>& a) {
  auto client = stampede::redis::Client::connect(a.at(0));
  stampede::Cache<std::string> cache(
      {.ttl = 60s}, stampede::redis::backend<std::string, stampede::StringCodec>(client, a.at(1)));
  std::cout << "ready" << std::endl;
  for (std::string line = read_stdin_line(); !line.empty() && line != "quit"; line = read_stdin_line()) {
    const auto sp1 = line.find(' ');
    const std::string verb = line.substr(0, sp1);
    const std::string rest = sp1 == std::string::npos ? "" : line.substr(sp1 + 1);
    const auto sp2 = rest.find(' ');
    const std::string key = rest.substr(0, sp2);
    const std::string value = sp2 == std::string::npos ? "" : rest.substr(sp2 + 1);
    if (verb == "load") {
      cache.get_or_compute(key, [&] { return value; });
    } else if (verb == "put") {
      cache.put(key, value);
    } else if (verb == "invalidate") {
      cache.invalidate(key);
    } else {
      return 2;
    }
    std::cout << "done" << std::endl;
  }
  return 0;
}

// failsafe URL PREFIX KEY up|down: one get_or_compute of KEY by a Cache with fail-safe on (max age
// 1 h, throttle 60 s) whose loader returns "new" (up) or throws (down); prints
// {"value":..., "loads":N, "fail_safe_served":N}, or {"error":...} if the call threw.
int child_failsafe(const std::vector<std::string>& a) {
  auto client = stampede::redis::Client::connect(a.at(0));
  stampede::Cache<std::string> cache({.ttl = 60s, .fail_safe_max_age = 1h, .fail_safe_throttle = 60s},
                                     stampede::redis::backend<std::string>(client, a.at(1)));
  const bool up = a.at(3) == "up";
  int loads = 0;
  nlohmann::json out;
  try {
    out["value"] = cache.get_or_compute(a.at(2), [&] {
      ++loads;
      if (!up) throw std::runtime_error("the database is down");
      return std::string("new");
    });
  } catch (const std::exception& e) {
    out["error"] = e.what();
  }
  out["loads"] = loads;
  out["fail_safe_served"] = cache.stats().fail_safe_served;
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace

#ifdef STAMPEDE_TEST_WITH_ASIO
namespace redis_test {
int child_async_waiters(const std::vector<std::string>& a);  // async_process_test.cpp
}  // namespace redis_test
#endif

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
      if (mode == "writer") return child_writer(args);
      if (mode == "failsafe") return child_failsafe(args);
#ifdef STAMPEDE_TEST_WITH_ASIO
      if (mode == "async_waiters") return redis_test::child_async_waiters(args);
#endif
    } catch (const std::exception& e) {
      std::cout << "error: " << e.what() << std::endl;
      return 3;
    }
    return 4;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
