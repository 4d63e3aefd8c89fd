// tests/redis/fork_test.cpp: a Client and a RedisTokenLock used before fork() (a pre-fork server):
// the child gets its own connections and its own pub/sub reader, so neither process ever reads the
// other's replies, and the child's waiters are woken by releases from other processes. A Redis
// Cache forked while it loads a key gives the child correct values, lets it load that key and runs
// its stale-while-revalidate refreshes on a refresher of its own.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stampede/redis/redis.hpp>
#include <stampede/stampede.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "instances.hpp"  // RedisStore<int>, Cache<int>, ...: compiled once
#include "redis_server.hpp"
#include "stampede/detail/sanitizers.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using stampede::redis::Client;
using stampede::redis::RedisTokenLock;
using stampede::redis::Reply;

#if defined(STAMPEDE_TSAN)
constexpr bool kUnderTsan = true;
#else
constexpr bool kUnderTsan = false;
#endif
// GCC 12's AddressSanitizer runtime does not hold its allocator's locks across fork(): a child
// forked while another thread is inside malloc can block forever in the runtime's own code (seen:
// the child's new threads stuck in SizeClassAllocator64::GetFromAllocator). Under ASan a test
// therefore lets such a thread finish before it forks, and forks only once every other thread is
// asleep (quiet_before_fork); the plain build keeps the threads running through the fork.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kUnderAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kUnderAsan = true;
#else
constexpr bool kUnderAsan = false;
#endif
#else
constexpr bool kUnderAsan = false;
#endif

// @return true if every thread of this process but the caller is asleep in a system call that
// waits for something (a futex, poll, a read: /proc/self/task/*/syscall). Such a thread is not
// inside the allocator, so a fork() now cannot copy an allocator lock it holds.
bool other_threads_asleep() {
  static const std::set<long> kWaits = {
    SYS_futex,
    SYS_ppoll,
    SYS_pselect6,
    SYS_read,
    SYS_recvfrom,
    SYS_epoll_pwait,
    SYS_clock_nanosleep,
#if defined(SYS_poll)
    SYS_poll,
    SYS_select,
    SYS_epoll_wait,
    SYS_nanosleep,
#endif
  };
  const long self = ::syscall(SYS_gettid);
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    const std::string tid = task.path().filename().string();
    if (tid == std::to_string(self)) continue;
    std::ifstream in(task.path() / "syscall");
    std::string first;
    if (!(in >> first)) continue;  // the thread exited
    char* end = nullptr;
    const long nr = std::strtol(first.c_str(), &end, 10);
    if (end == first.c_str() || *end != '\0' || !kWaits.contains(nr)) return false;  // "running", -1, ...
  }
  return !ec;
}

// Under ASan (see kUnderAsan): waits until every other thread has been asleep at two looks 5 ms
// apart, so that none is inside the allocator when the caller forks. Elsewhere: returns at once.
// @return false if the other threads never all slept (a hang guard).
bool quiet_before_fork() {
  if (!kUnderAsan) return true;
  return stampede_test::eventually([] {
    if (!other_threads_asleep()) return false;
    std::this_thread::sleep_for(5ms);
    return other_threads_asleep();
  });
}

// Runs `rounds` SET/GET pairs on each of `threads` threads, each thread on its own key, with
// values that name `who`.
// @return the first wrong reply or error, empty if every reply was this process's own.
std::string own_values_only(Client& client, const std::string& who, int threads, int rounds) {
  std::mutex mu;
  std::string first;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      const std::string key = who + ":" + std::to_string(t);
      for (int i = 0; i < rounds; ++i) {
        const std::string value = who + "-" + std::to_string(t) + "-" + std::to_string(i);
        std::string wrong;
        try {
          const Reply set = client.command({"SET", key, value});
          if (set.type != Reply::Type::status || set.str != "OK") {
            wrong = "SET answered '" + set.str + "'";
          } else if (const Reply get = client.command({"GET", key}); get.str != value) {
            wrong = "GET " + key + " answered '" + get.str + "', expected '" + value + "'";
          }
        } catch (const std::exception& e) {
          wrong = e.what();
        }
        if (!wrong.empty()) {
          std::lock_guard l(mu);
          if (first.empty()) first = who + ": " + wrong;
          return;
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  return first;
}

void write_line(int fd, const std::string& line) {
  const std::string data = line + "\n";
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<std::size_t>(n);
  }
}

// @return the next line from `fd` (without '\n'), or "<timeout>" / "<eof>" (a hang guard).
std::string read_line(int fd, std::string& buffer,
                      std::chrono::milliseconds limit = stampede_test::kHangGuard) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (auto nl = buffer.find('\n'); nl != std::string::npos) {
      std::string line = buffer.substr(0, nl);
      buffer.erase(0, nl + 1);
      return line;
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return "<timeout>";
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char chunk[512];
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return "<eof>";
    buffer.append(chunk, static_cast<std::size_t>(n));
  }
}

// Reaps the child `pid` and expects that it exited with status 0.
void expect_clean_exit(pid_t pid) {
  const std::optional<int> status = stampede_test::reap_child(pid);
  ASSERT_TRUE(status.has_value()) << "the child hung";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "child status " << *status;
}

// The child's half of the test. Never returns into gtest: the caller _exit()s with the result.
// Writes "ready", "subscribed" and finally "ok" or the failures, "; "-separated, to `out`.
// @return 0 if everything held, 1 otherwise.
int child_main(Client& client, RedisTokenLock& lock, std::unique_ptr<stampede::Subscription> inherited,
               const std::string& held_token, int in, int out) {
  std::string buffer, failures;
  auto fail = [&](const std::string& why) { failures += (failures.empty() ? "" : "; ") + why; };
  // A Subscription made before fork() must not hang the child: its wait returns at once (a
  // spurious wake-up: the caller re-checks and subscribes again).
  if (!inherited->wait_until(std::chrono::steady_clock::now() + 10s)) {
    fail("a Subscription from before fork() was not woken in the child");
  }
  inherited.reset();
  write_line(out, "ready");
  if (std::string r = own_values_only(client, "child", 4, 500); !r.empty()) fail(r);
  // A release by the parent wakes a waiter of the child.
  std::unique_ptr<stampede::Subscription> sub;
  try {
    sub = lock.subscribe("k");
    if (lock.holder("k") != held_token) fail("the child does not see the parent's lock");
  } catch (const std::exception& e) {
    fail(std::string("subscribe: ") + e.what());
  }
  write_line(out, "subscribed");
  if (sub && !sub->wait_until(std::chrono::steady_clock::now() + 30s)) {
    fail("the child's waiter was not woken by the parent's release");
  }
  if (read_line(in, buffer) != "released") fail("the parent did not say it released");
  write_line(out, failures.empty() ? "ok" : failures);
  return failures.empty() ? 0 : 1;
}

TEST(RedisFork, ParentAndChildSeeOnlyTheirOwnRepliesAndTheChildIsWokenByTheParent) {
  if (kUnderTsan)
    GTEST_SKIP() << "ThreadSanitizer does not support starting threads after a multi-threaded fork()";
  redis_test::RedisServer server;
  auto client = Client::connect(server.url(), {.pool_size = 4});
  auto lock = std::make_shared<RedisTokenLock>(client, "p:");
  // Use the client from several threads, so that the pool holds idle connections at fork() time,
  // and connect the pub/sub reader.
  ASSERT_EQ(own_values_only(*client, "warm", 4, 50), "");
  ASSERT_GE(client->open_connections(), 2u);
  auto inherited = lock->subscribe("k");
  const auto held = lock->try_acquire("k", 60s);
  ASSERT_TRUE(held);

  int to_child[2], from_child[2];
  ASSERT_EQ(::pipe2(to_child, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(from_child, O_CLOEXEC), 0);
  ASSERT_TRUE(quiet_before_fork()) << "the parent's threads never all slept";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(to_child[1]);
    ::close(from_child[0]);
    // _exit: no gtest, no static destructors (they would stop the parent's servers).
    ::_exit(child_main(*client, *lock, std::move(inherited), held->token, to_child[0], from_child[1]));
  }
  ::close(to_child[0]);
  ::close(from_child[1]);
  std::string buffer;
  const std::string ready = read_line(from_child[0], buffer);
  EXPECT_EQ(ready, "ready");
  // Parent and child now hammer the same server through connections that existed before the fork.
  EXPECT_EQ(own_values_only(*client, "parent", 4, 500), "");
  if (ready == "ready") {
    EXPECT_EQ(read_line(from_child[0], buffer), "subscribed");
    EXPECT_TRUE(lock->release("k", held->token));
    write_line(to_child[1], "released");
    EXPECT_EQ(read_line(from_child[0], buffer), "ok");
  }
  expect_clean_exit(pid);
  ::close(to_child[1]);
  ::close(from_child[0]);

  // The parent's connections and its pub/sub reader are unharmed.
  EXPECT_EQ(own_values_only(*client, "after", 4, 100), "");
  auto sub = lock->subscribe("k2");
  RedisTokenLock(client, "p:").notify("k2");
  EXPECT_TRUE(sub->wait_until(std::chrono::steady_clock::now() + stampede_test::kHangGuard));
}

TEST(RedisFork, ARedlockUsedBeforeTheForkWorksInTheChild) {
  if (kUnderTsan)
    GTEST_SKIP() << "ThreadSanitizer does not support starting threads after a multi-threaded fork()";
  std::vector<std::unique_ptr<redis_test::RedisServer>> servers;
  std::vector<std::shared_ptr<Client>> clients;
  for (int i = 0; i < 3; ++i) {
    servers.push_back(std::make_unique<redis_test::RedisServer>());
    clients.push_back(Client::connect(servers.back()->url(), {.connect_timeout = 5s, .command_timeout = 5s}));
  }
  // node_timeout: the child opens new connections and subscribes on every node, which under the
  // sanitizers on a loaded machine (load 30 and more) took longer than 1 s; this test is about
  // fork(), so it waits 5 s for a node and a command (the TTLs are at least 10 x node_timeout, as
  // Redlock requires).
  stampede::redis::Redlock lock(clients, "p:", {.node_timeout = std::chrono::seconds(5)});
  // The parent's worker threads and pub/sub readers exist at fork() time.
  auto t = lock.try_acquire("parent", 60s);
  ASSERT_TRUE(t);
  auto sub = lock.subscribe("parent");

  int from_child[2];
  ASSERT_EQ(::pipe2(from_child, O_CLOEXEC), 0);
  ASSERT_TRUE(quiet_before_fork()) << "the parent's threads never all slept";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(from_child[0]);
    std::string result = "ok";
    try {
      auto mine = lock.try_acquire("child", 60s);
      if (!mine) throw std::runtime_error("the child could not take a free lock");
      if (lock.try_acquire("parent", 60s)) throw std::runtime_error("the child took the parent's lock");
      auto child_sub = lock.subscribe("child");
      if (!lock.release("child", mine->token)) throw std::runtime_error("release failed");
      if (!child_sub->wait_until(std::chrono::steady_clock::now() + 30s)) {
        throw std::runtime_error("the child's release did not wake the child's waiter");
      }
      if (lock.bump_fence("child") <= mine->fence) throw std::runtime_error("the fence went back");
    } catch (const std::exception& e) {
      result = e.what();
    }
    write_line(from_child[1], result);
    ::_exit(result == "ok" ? 0 : 1);
  }
  ::close(from_child[1]);
  std::string buffer;
  EXPECT_EQ(read_line(from_child[0], buffer), "ok");
  expect_clean_exit(pid);
  ::close(from_child[0]);
  // The parent's Redlock is unharmed.
  EXPECT_TRUE(lock.release("parent", t->token));
  EXPECT_TRUE(sub->wait_until(std::chrono::steady_clock::now() + stampede_test::kHangGuard));
}

// The child's half of the Cache test; see below. Writes "ok" or the failures, "; "-separated.
// @return 0 if everything held, 1 otherwise.
int cache_child_main(stampede::Cache<std::string>& cache, Client& client, stampede::ManualClock& clock,
                     int out) {
  std::string failures;
  auto fail = [&](const std::string& why) { failures += (failures.empty() ? "" : "; ") + why; };
  try {
    // Values of the child's own keys, while the parent's thread works on the same connections.
    for (int i = 0; i < 50; ++i) {
      const std::string key = "child:" + std::to_string(i);
      const std::string want = "child-value-" + std::to_string(i);
      if (std::string got = cache.get_or_compute(key, [&] { return want; }); got != want) {
        fail(key + " gave '" + got + "'");
        break;
      }
      if (std::optional<std::string> again = cache.get(key); again != want) {
        fail(key + " was not stored: get gave '" + again.value_or("<none>") + "'");
        break;
      }
    }
    if (std::string r = own_values_only(client, "child", 2, 200); !r.empty()) fail(r);
    // The key the parent is loading at fork() time: the parent's flight has no leader here. The
    // child waits for the lock the parent holds at most wait_timeout, then loads it itself.
    int child_loads = 0;
    const std::string loaded = cache.get_or_compute("loading", [&] {
      ++child_loads;
      return std::string("child-load");
    });
    if (loaded != "child-load" || child_loads != 1) {
      fail("the key loading at fork() time gave '" + loaded + "' after " + std::to_string(child_loads) +
           " loads in the child");
    }
    // Stale-while-revalidate: the refresh runs on a refresher thread of the child's own.
    clock.advance(2s);
    if (std::string stale = cache.get_or_compute("swr", [] { return std::string("child-refresh"); });
        stale != "parent-swr") {
      fail("the stale read gave '" + stale + "'");
    }
    cache.wait_idle();
    if (std::optional<std::string> fresh = cache.get("swr"); fresh != "child-refresh") {
      fail("the child's refresh did not store: get gave '" + fresh.value_or("<none>") + "'");
    }
  } catch (const std::exception& e) {
    fail(std::string("threw: ") + e.what());
  }
  write_line(out, failures.empty() ? "ok" : failures);
  return failures.empty() ? 0 : 1;
}

TEST(RedisFork, ARedisCacheLoadingAKeyAtForkTimeWorksInTheChild) {
  if (kUnderTsan)
    GTEST_SKIP() << "ThreadSanitizer does not support starting threads after a multi-threaded fork()";
  redis_test::RedisServer server;
  auto client = Client::connect(server.url(), {.pool_size = 4});
  auto clock = std::make_shared<stampede::ManualClock>(std::chrono::system_clock::now());
  stampede::Cache<std::string> cache({.mode = stampede::Mode::stale_while_revalidate,
                                      .soft_ttl = 1s,
                                      .swr_window = 60s,
                                      .lock_ttl = 60s,
                                      .wait_timeout = 500ms,
                                      .poll_interval = 20ms,
                                      .clock = clock},
                                     stampede::redis::backend<std::string>(client, "c:"));
  // The parent's refresher thread exists at fork() time.
  ASSERT_EQ(cache.get_or_compute("warm", [] { return std::string("w0"); }), "w0");
  clock->advance(2s);
  ASSERT_EQ(cache.get_or_compute("warm", [] { return std::string("w1"); }), "w0");
  cache.wait_idle();
  ASSERT_EQ(cache.get("warm"), "w1");
  ASSERT_EQ(cache.get_or_compute("swr", [] { return std::string("parent-swr"); }), "parent-swr");

  // A load of "loading" is in flight (flight, lock and lease renewal) when the parent forks.
  stampede_test::Gate entered, finish;
  stampede_test::OpenOnExit finish_on_exit(finish);
  auto parent_load = std::async(std::launch::async, [&] {
    return cache.get_or_compute("loading", [&] {
      entered.open();
      finish.wait();
      return std::string("parent-load");
    });
  });
  ASSERT_TRUE(entered.wait_for());
  // And another thread of the parent is using the pool's connections.
  std::atomic<bool> stop{false};
  auto parent_traffic = std::async(std::launch::async, [&] {
    std::string first;
    while (!stop.load() && first.empty()) first = own_values_only(*client, "parent", 1, 20);
    return first;
  });
  std::string parent_traffic_result;
  if (kUnderAsan) {  // see kUnderAsan: the pool still holds the connections this thread used
    stop.store(true);
    parent_traffic_result = parent_traffic.get();
  }

  int from_child[2];
  ASSERT_EQ(::pipe2(from_child, O_CLOEXEC), 0);
  ASSERT_TRUE(quiet_before_fork()) << "the parent's threads never all slept";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(from_child[0]);
    // _exit: no gtest, no static destructors (they would stop the parent's servers).
    ::_exit(cache_child_main(cache, *client, *clock, from_child[1]));
  }
  ::close(from_child[1]);
  std::string buffer;
  EXPECT_EQ(read_line(from_child[0], buffer), "ok");
  expect_clean_exit(pid);
  ::close(from_child[0]);

  // The parent is unharmed: its load completes and is stored, its traffic saw only its replies.
  stop.store(true);
  if (!kUnderAsan) parent_traffic_result = parent_traffic.get();
  EXPECT_EQ(parent_traffic_result, "");
  finish.open();
  EXPECT_EQ(parent_load.get(), "parent-load");
  EXPECT_EQ(cache.get("loading"), "parent-load");
}

}  // namespace
