// tests/redis/fault_test.cpp: the Redis backend under network and server faults, injected by
// stampede_test::FaultProxy between the library and a real redis-server: a command stalled past
// command_timeout in the middle of a stampede, a connection reset in the middle of the acquire or
// the fenced store script, a pub/sub connection that goes silent without a reset, and the server
// restarted while callers keep calling. Each test asserts what the documentation promises for that
// fault: the values callers get, how many loads run, the lock's TTL and fences, and recovery.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stampede/redis/redis.hpp>
#include <stampede/stampede.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "instances.hpp"  // RedisStore<int>, Cache<int>, ...: compiled once
#include "redis_server.hpp"
#include "support/fault_proxy.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using redis_test::shared_client;
using redis_test::shared_server;
using redis_test::unique_prefix;
using stampede::backend_error;
using stampede::redis::Client;
using stampede::redis::ClientOptions;
using stampede::redis::RedisStore;
using stampede::redis::RedisTokenLock;
using stampede_test::Direction;
using stampede_test::eventually;
using stampede_test::FaultProxy;
using stampede_test::kHangGuard;
using stampede_test::ProxySnapshot;

// Short timeouts, so that a stalled command fails in a fraction of a second.
ClientOptions fast_options() {
  return ClientOptions{.connect_timeout = 500ms,
                       .command_timeout = 300ms,
                       .borrow_timeout = 3000ms,
                       .pool_size = 8,
                       .keepalive_interval = 100ms};
}

// Bytes read by the proxy but never forwarded in `d`, over every connection, open or closed.
std::uint64_t held_anywhere(const ProxySnapshot& s, Direction d) {
  std::uint64_t held = 0;
  for (const auto& c : s.connections) held += c.held(d);
  return held;
}

// Runs `call` on `n` threads at once. @return each thread's result, or the text of what it threw;
// "<hang>" for a call still running after the hang guard (the test then fails on it).
std::vector<std::string> run_callers(int n, const std::function<std::string()>& call) {
  std::vector<std::future<std::string>> futures;
  futures.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    futures.push_back(std::async(std::launch::async, [&call] {
      try {
        return call();
      } catch (const std::exception& e) {
        return std::string("threw: ") + e.what();
      }
    }));
  }
  std::vector<std::string> out;
  for (auto& f : futures) {
    out.push_back(f.wait_for(kHangGuard) == std::future_status::ready ? f.get() : std::string("<hang>"));
  }
  return out;
}

stampede::Entry<int> entry_of(int value, std::uint64_t fence) {
  const auto now = std::chrono::system_clock::now();
  return stampede::Entry<int>{value, now + 60s, now + 60s, fence, 0ms};
}

// ---- (a) a command stalled past command_timeout in the middle of a stampede --------------------

// The leader holds the lock and is loading when every byte to and from Redis stops. Documented
// (design.md, Failure): its in-process waiters get its value (published before the store), the
// failed store is counted and the caller still gets the value (fail_open); while Redis stays
// unreachable, a new wave of callers loads once per flight without the lock; once the link is back
// the key is stored and served again.
TEST(RedisFault, ACommandStalledPastCommandTimeoutMidStampedeFailsOpenWithOneLoadPerFlight) {
  constexpr int kCallers = 12;
  FaultProxy proxy(shared_server().port());
  auto client = Client::create(proxy.url(), fast_options());
  const std::string prefix = unique_prefix();
  stampede::Cache<int> cache({.ttl = 60s, .lock_ttl = 5s, .wait_timeout = 30s, .poll_interval = 20ms},
                             stampede::redis::backend<int>(client, prefix));
  struct ResumeProxy {
    FaultProxy& p;
    ~ResumeProxy() {
      p.resume(Direction::upstream);
      p.resume(Direction::downstream);
    }
  } resume_on_exit{proxy};
  std::atomic<int> loads{0};

  // Wave 1: the stall begins while the leader's loader runs (it holds the lock).
  const auto wave1 = run_callers(kCallers, [&] {
    return std::to_string(cache.get_or_compute("k", [&] {
      EXPECT_TRUE(eventually([&] { return cache.stats().misses >= kCallers; }));
      std::this_thread::sleep_for(50ms);  // a slow load: lets the last caller join the flight
      proxy.stall(Direction::upstream);
      proxy.stall(Direction::downstream);
      loads.fetch_add(1);
      return 42;
    }));
  });
  EXPECT_EQ(std::count(wave1.begin(), wave1.end(), "42"), kCallers) << wave1.front() << " / " << wave1.back();
  EXPECT_EQ(loads.load(), 1);
  stampede::Stats st = cache.stats();
  EXPECT_GE(st.store_failures, 1u) << "the store was stalled and must have failed";
  EXPECT_GE(st.backend_errors, 1u);
  EXPECT_GT(held_anywhere(proxy.snapshot(), Direction::upstream), 0u) << "no command was stalled";

  // Wave 2, still stalled: the read and the lock fail; the callers share one load, unstored.
  const auto wave2 = run_callers(kCallers, [&] {
    return std::to_string(cache.get_or_compute("k", [&] {
      EXPECT_TRUE(eventually([&] { return cache.stats().misses >= 2 * kCallers; }));
      std::this_thread::sleep_for(50ms);  // a slow load: lets the last caller join the flight
      loads.fetch_add(1);
      return 43;
    }));
  });
  EXPECT_EQ(std::count(wave2.begin(), wave2.end(), "43"), kCallers) << wave2.front() << " / " << wave2.back();
  EXPECT_EQ(loads.load(), 2) << "fail_open must coalesce in process: one load per flight";

  // The stall ends: whatever was held reaches the server (or is dropped with its connection).
  proxy.resume(Direction::upstream);
  proxy.resume(Direction::downstream);
  ASSERT_TRUE(proxy.wait_until([](const ProxySnapshot& s) {
    return held_anywhere(s, Direction::upstream) == 0 && held_anywhere(s, Direction::downstream) == 0;
  })) << "the proxy still holds bytes after resume()";

  // The key is usable: a call gets a value (the late store of 42, or a new load), and that value
  // is stored, so the next call hits it without loading.
  const int v = cache.get_or_compute("k", [&] {
    loads.fetch_add(1);
    return 44;
  });
  EXPECT_TRUE(v == 42 || v == 44) << v;
  const int loads_before = loads.load();
  EXPECT_EQ(cache.get("k"), std::optional<int>(v));
  EXPECT_EQ(cache.get_or_compute("k",
                                 [&] {
                                   loads.fetch_add(1);
                                   return 45;
                                 }),
            v);
  EXPECT_EQ(loads.load(), loads_before);
}

// ---- (b) a connection reset in the middle of a script ------------------------------------------

// Direction of the cut: upstream = the script never reaches the server (the lock is not taken, the
// value not stored); downstream = the server runs it and the reply is lost (the lock IS taken by a
// token nobody knows; the value IS stored).
class RedisFaultCut : public ::testing::TestWithParam<Direction> {};

std::string direction_name(const ::testing::TestParamInfo<Direction>& info) {
  return info.param == Direction::upstream ? "BeforeTheServer" : "AfterTheServer";
}

// @return the fence counter (`next`) of `key`'s fence hash, 0 if absent.
std::uint64_t fence_next(const std::string& prefix, const std::string& key) {
  const auto r = shared_client()->command({"HGET", prefix + "fence:{" + key + "}", "next"});
  return r.is_nil() ? 0 : std::stoull(r.str);
}

TEST_P(RedisFaultCut, ACutDuringTheAcquireKeepsTheLockBoundedByItsTtlAndFencesRising) {
  const Direction dir = GetParam();
  FaultProxy proxy(shared_server().port());
  const std::string prefix = unique_prefix();
  RedisTokenLock proxied(Client::create(proxy.url(), fast_options()), prefix);
  RedisTokenLock direct(shared_client(), prefix);
  RedisStore<int> store(shared_client(), prefix);

  const auto first = direct.try_acquire("k", 5s);
  ASSERT_TRUE(first);
  ASSERT_TRUE(direct.release("k", first->token));

  proxied.client()->command({"PING"});  // the pool's connection exists before the cut is armed
  proxy.cut_on_data(dir);
  EXPECT_THROW((void)proxied.try_acquire("k", 800ms), backend_error);
  proxy.disarm_cut_on_data();

  const std::uint64_t next_after_cut = fence_next(prefix, "k");
  const std::optional<std::string> holder = direct.holder("k");
  if (dir == Direction::downstream) {
    EXPECT_TRUE(holder) << "the server ran the acquire: the lock is held by the lost token";
    EXPECT_GT(next_after_cut, first->fence) << "the lost acquire drew a fence";
  } else {
    EXPECT_FALSE(holder) << "the acquire never reached the server";
  }

  // The lost holder's lock ends with its TTL; the next holder's fence is above every earlier one.
  std::optional<stampede::LockToken> next;
  ASSERT_TRUE(eventually([&] { return (next = direct.try_acquire("k", 5s)).has_value(); }))
      << "the lock taken by the cut acquire never expired";
  EXPECT_GT(next->fence, next_after_cut);
  EXPECT_GT(next->fence, first->fence);
  EXPECT_EQ(store.put("k", entry_of(2, next->fence), std::chrono::system_clock::now()),
            stampede::PutResult::stored);
  // A write with the fence the lost acquire drew is stale now.
  EXPECT_EQ(store.put("k", entry_of(1, next_after_cut), std::chrono::system_clock::now()),
            stampede::PutResult::stale_fence);
  EXPECT_TRUE(direct.release("k", next->token));

  // The key stays loadable through the proxied client.
  stampede::Cache<int> cache({.ttl = 60s}, stampede::redis::backend<int>(proxied.client(), prefix));
  EXPECT_EQ(cache.get("k"), std::optional<int>(2));
  cache.invalidate("k");
  EXPECT_EQ(cache.get_or_compute("k", [] { return 3; }), 3);
  EXPECT_EQ(cache.get("k"), std::optional<int>(3));
}

TEST_P(RedisFaultCut, ACutDuringTheFencedStoreNeverLetsItsFenceWinOverALaterHolder) {
  const Direction dir = GetParam();
  FaultProxy proxy(shared_server().port());
  const std::string prefix = unique_prefix();
  auto proxied_client = Client::create(proxy.url(), fast_options());
  RedisTokenLock proxied(proxied_client, prefix);
  RedisStore<int> proxied_store(proxied_client, prefix);
  RedisTokenLock direct(shared_client(), prefix);
  RedisStore<int> store(shared_client(), prefix);

  const auto held = proxied.try_acquire("k", 800ms);
  ASSERT_TRUE(held);
  // A first store teaches the client the script's digest, so the cut below hits the reply of the
  // script itself (EVALSHA), not that of a SCRIPT LOAD before it. (With a fence of its own key: the
  // store refuses a fence for a key it holds no fence hash for.)
  ASSERT_EQ(
      proxied_store.put("other", entry_of(0, proxied.bump_fence("other")), std::chrono::system_clock::now()),
      stampede::PutResult::stored);
  proxy.cut_on_data(dir);
  EXPECT_THROW((void)proxied_store.put("k", entry_of(1, held->fence), std::chrono::system_clock::now()),
               backend_error);
  proxy.disarm_cut_on_data();

  const auto stored = store.get("k", std::chrono::system_clock::now());
  if (dir == Direction::downstream) {
    ASSERT_TRUE(stored) << "the server ran the store";
    EXPECT_EQ(stored->value, 1);
    EXPECT_EQ(stored->fence, held->fence);
  } else {
    EXPECT_FALSE(stored) << "the store never reached the server";
  }

  // The holder is gone (its release never comes): the lock ends with its TTL.
  std::optional<stampede::LockToken> next;
  ASSERT_TRUE(eventually([&] { return (next = direct.try_acquire("k", 5s)).has_value(); }))
      << "the cut holder's lock never expired";
  EXPECT_GT(next->fence, held->fence);
  EXPECT_EQ(store.put("k", entry_of(2, next->fence), std::chrono::system_clock::now()),
            stampede::PutResult::stored);
  // The cut holder retries its write: refused, the later holder's value stays.
  EXPECT_EQ(proxied_store.put("k", entry_of(1, held->fence), std::chrono::system_clock::now()),
            stampede::PutResult::stale_fence);
  EXPECT_TRUE(direct.release("k", next->token));
  EXPECT_EQ(store.get("k", std::chrono::system_clock::now())->value, 2);

  stampede::Cache<int> cache({.ttl = 60s}, stampede::redis::backend<int>(proxied_client, prefix));
  cache.invalidate("k");
  EXPECT_EQ(cache.get_or_compute("k", [] { return 3; }), 3);
  EXPECT_EQ(cache.get("k"), std::optional<int>(3));
}

INSTANTIATE_TEST_SUITE_P(Directions, RedisFaultCut,
                         ::testing::Values(Direction::upstream, Direction::downstream), direction_name);

// ---- (c) a pub/sub connection that dies silently ---------------------------------------------

// A TokenLock whose commands go to one RedisTokenLock and whose wake-ups come from another (over
// the proxy), so that the proxy can silence the pub/sub connection alone. Thread-safe.
class SplitLock final : public stampede::TokenLock {
 public:
  SplitLock(std::shared_ptr<stampede::TokenLock> commands, std::shared_ptr<stampede::TokenLock> wakeups)
      : commands_(std::move(commands)), wakeups_(std::move(wakeups)) {}

 private:
  std::optional<stampede::LockToken> do_try_acquire(std::string_view key,
                                                    std::chrono::milliseconds ttl) override {
    return commands_->try_acquire(key, ttl);
  }
  bool do_release(std::string_view key, std::string_view token) override {
    return commands_->release(key, token);
  }
  bool do_renew(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) override {
    return commands_->renew(key, token, ttl);
  }
  std::uint64_t do_bump_fence(std::string_view key) override { return commands_->bump_fence(key); }
  std::unique_ptr<stampede::Subscription> do_subscribe(std::string_view key) override {
    return wakeups_->subscribe(key);
  }
  void do_notify(std::string_view key) override { commands_->notify(key); }

  std::shared_ptr<stampede::TokenLock> commands_;
  std::shared_ptr<stampede::TokenLock> wakeups_;
};

// The pub/sub connection stops carrying bytes both ways, with no reset, while another process
// holds the lock: the release's wake-up never arrives. The waiters still get the holder's value by
// polling the store well within wait_timeout (no load, no timeout), the subscriber's keepalive
// PING goes unanswered and it declares the connection lost and reconnects, and once the link is
// back a subscription is woken by a release again.
TEST(RedisFault, ASilentlyDeadPubSubConnectionIsDetectedByItsKeepaliveWhileWaitersPoll) {
  constexpr int kWaiters = 6;
  FaultProxy proxy(shared_server().port());
  const std::string prefix = unique_prefix();
  auto wakeups = std::make_shared<RedisTokenLock>(Client::create(proxy.url(), fast_options()), prefix);
  auto direct = std::make_shared<RedisTokenLock>(shared_client(), prefix);
  auto store = std::make_shared<RedisStore<int>>(shared_client(), prefix);
  stampede::Cache<int> cache({.ttl = 60s, .lock_ttl = 5s, .wait_timeout = 30s, .poll_interval = 20ms},
                             {store, std::make_shared<SplitLock>(direct, wakeups), "redis"});
  struct ResumeProxy {
    FaultProxy& p;
    ~ResumeProxy() {
      p.resume(Direction::upstream);
      p.resume(Direction::downstream);
    }
  } resume_on_exit{proxy};

  // The pub/sub connection is the proxy's only one.
  (void)wakeups->subscribe("warm-up");
  ProxySnapshot before = proxy.snapshot();
  ASSERT_EQ(before.accepted, 1u);
  const std::uint64_t pubsub_id = before.connections.front().id;
  const std::uint64_t sent_before = before.connections.front().received[0];
  proxy.stall(Direction::upstream);
  proxy.stall(Direction::downstream);

  // Another process holds the lock; this one's callers wait for it.
  const auto holder = direct->try_acquire("k", 30s);
  ASSERT_TRUE(holder);
  std::atomic<int> loads{0};
  std::vector<std::future<std::string>> waiters;
  for (int i = 0; i < kWaiters; ++i) {
    waiters.push_back(std::async(std::launch::async, [&] {
      try {
        return std::to_string(cache.get_or_compute("k", [&] {
          loads.fetch_add(1);
          return -1;
        }));
      } catch (const std::exception& e) {
        return std::string("threw: ") + e.what();
      }
    }));
  }
  ASSERT_TRUE(eventually([&] { return cache.stats().lock_contended >= 1; }));
  ASSERT_EQ(store->put("k", entry_of(7, holder->fence), std::chrono::system_clock::now()),
            stampede::PutResult::stored);
  ASSERT_TRUE(direct->release("k", holder->token));  // its wake-up is lost in the stall
  for (auto& w : waiters) {
    ASSERT_EQ(w.wait_for(kHangGuard), std::future_status::ready);
    EXPECT_EQ(w.get(), "7");
  }
  EXPECT_EQ(loads.load(), 0);
  const stampede::Stats st = cache.stats();
  EXPECT_EQ(st.wait_timeouts, 0u);
  EXPECT_EQ(st.fallback_computes, 0u);

  // The keepalive: a PING went out on the silent connection, and the subscriber gave it up and
  // opened another (hang guard: keepalive_interval + command_timeout is well under it).
  EXPECT_TRUE(proxy.wait_until([&](const ProxySnapshot& s) {
    const auto* c = s.find(pubsub_id);
    return c != nullptr && c->received[0] > sent_before && s.accepted >= 2;
  })) << "the silent pub/sub connection was never PINGed and replaced";

  // The link is back: a subscription is confirmed and woken by a release again.
  proxy.resume(Direction::upstream);
  proxy.resume(Direction::downstream);
  std::unique_ptr<stampede::Subscription> sub;
  ASSERT_TRUE(eventually([&] {
    try {
      sub = wakeups->subscribe("k2");
      return true;
    } catch (const backend_error&) {
      return false;  // a reconnect begun during the stall may still be failing
    }
  }));
  const auto again = direct->try_acquire("k2", 5s);
  ASSERT_TRUE(again);
  ASSERT_TRUE(direct->release("k2", again->token));
  EXPECT_TRUE(sub->wait_until(std::chrono::steady_clock::now() + kHangGuard));
}

// ---- (d) Redis restarted during traffic ------------------------------------------------------

// Readers call get_or_compute on a few keys while a writer bumps a key's version, invalidates it
// and reads its own write; meanwhile the server is killed and started again on the same port
// (without persistence: every key, lock and fence is gone). A value names its key and version, so
// a reader can tell a wrong value (another key's, a version not written yet) or a stale one (older
// than an invalidate that returned before the call began). fail_open: callers get values
// throughout; invalidate throws backend_error while the server is down and is retried. Traffic
// recovers: after the restart values are stored and served from Redis again.
TEST(RedisFault, RedisRestartedDuringTrafficNeverGivesAWrongOrStaleValueAndTrafficRecovers) {
  constexpr int kKeys = 4;
  constexpr int kReaders = 4;
  constexpr long kVersionBase = 1'000'000;
  redis_test::RedisServer server;
  auto client = Client::create(server.url(), fast_options());
  stampede::Cache<long> cache({.ttl = 60s, .lock_ttl = 2s, .wait_timeout = 2s, .poll_interval = 20ms},
                              stampede::redis::backend<long>(client, "restart:"));
  std::array<std::atomic<long>, kKeys> version{};
  std::array<std::atomic<long>, kKeys> floor{};  // versions whose invalidate returned
  std::atomic<bool> stop{false};
  std::atomic<long> calls{0};
  std::atomic<long> invalidates_ok{0};
  std::atomic<long> invalidates_failed{0};
  std::mutex mu;
  std::string first_violation;
  auto violation = [&](const std::string& what) {
    std::lock_guard l(mu);
    if (first_violation.empty()) first_violation = what;
  };
  auto key_of = [](int i) { return "k" + std::to_string(i); };
  auto read_checked = [&](int i, long at_least) {
    const long v = cache.get_or_compute(key_of(i), [&, i] { return i * kVersionBase + version[i].load(); });
    calls.fetch_add(1);
    if (v / kVersionBase != i) violation(key_of(i) + " got another key's value " + std::to_string(v));
    if (v % kVersionBase < at_least) {
      violation(key_of(i) + " got version " + std::to_string(v % kVersionBase) + " after an invalidate of " +
                std::to_string(at_least) + " returned");
    }
    if (v % kVersionBase > version[i].load()) violation(key_of(i) + " got a version not written yet");
  };

  std::vector<std::thread> threads;
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&, r] {
      for (int n = 0; !stop.load(); ++n) {
        const int i = (r + n) % kKeys;
        try {
          read_checked(i, floor[i].load());
        } catch (const std::exception& e) {
          violation(std::string("get_or_compute threw under fail_open: ") + e.what());
        }
      }
    });
  }
  threads.emplace_back([&] {
    for (int n = 0; !stop.load(); ++n) {
      const int i = n % kKeys;
      const long v = version[i].fetch_add(1) + 1;
      for (;;) {  // an invalidate that threw may not have happened: retry until one returns
        try {
          cache.invalidate(key_of(i));
          break;
        } catch (const backend_error&) {
          invalidates_failed.fetch_add(1);
          if (stop.load()) return;
          std::this_thread::sleep_for(5ms);
        }
      }
      invalidates_ok.fetch_add(1);
      long f = floor[i].load();
      while (f < v && !floor[i].compare_exchange_weak(f, v)) {
      }
      try {
        read_checked(i, v);  // read your own write
      } catch (const std::exception& e) {
        violation(std::string("get_or_compute threw under fail_open: ") + e.what());
      }
    }
  });
  auto join_all = [&] {
    stop.store(true);
    for (auto& t : threads) {
      if (t.joinable()) t.join();
    }
  };
  struct JoinOnExit {
    std::function<void()> join;
    ~JoinOnExit() { join(); }
  } join_on_exit{join_all};

  ASSERT_TRUE(eventually([&] { return calls.load() >= 300 && invalidates_ok.load() >= 20; }));
  server.kill();
  const long calls_at_kill = calls.load();
  ASSERT_TRUE(eventually([&] {
    return calls.load() >= calls_at_kill + 1000 && invalidates_failed.load() > 0;
  })) << "callers stopped getting values while the server was down (or invalidate did not fail)";
  server.start();
  const long invalidates_at_start = invalidates_ok.load();
  const std::uint64_t hits_at_start = cache.stats().hits;
  ASSERT_TRUE(eventually([&] {
    return invalidates_ok.load() >= invalidates_at_start + 20 && cache.stats().hits >= hits_at_start + 100;
  })) << "traffic did not recover after the restart";
  join_all();
  EXPECT_EQ(first_violation, "");
  EXPECT_GT(cache.stats().backend_errors, 0u) << "the restart was not noticed";
}

// A load that began before an invalidate is still running when Redis restarts without persistence
// (the fence hash that the invalidate raised is gone). Its late store must not bring back the value
// the invalidate removed: a call that begins after invalidate returned gets a new load. The put
// script refuses a write to a key with no fence hash (docs/wire-format.md, "Fences"), so the late
// store is refused and counted, and the next load (with a fence drawn after the restart) is stored.
TEST(RedisFault, ALoadInFlightAcrossARestartNeverStoresOverAnInvalidateThatReturnedBeforeIt) {
  redis_test::RedisServer server;
  auto client_a = Client::create(server.url(), fast_options());
  auto client_b = Client::create(server.url(), fast_options());
  const stampede::CacheOptions options{
      .ttl = 60s, .lock_ttl = 30s, .wait_timeout = 5s, .poll_interval = 20ms};
  stampede::Cache<int> a(options, stampede::redis::backend<int>(client_a, "r:"));
  stampede::Cache<int> b(options, stampede::redis::backend<int>(client_b, "r:"));

  stampede_test::Gate entered, finish;
  stampede_test::OpenOnExit finish_on_exit(finish);
  auto old_load = std::async(std::launch::async, [&] {
    return a.get_or_compute("k", [&] {
      entered.open();
      finish.wait();
      return 1;  // read from the database before the row changed
    });
  });
  ASSERT_TRUE(entered.wait_for());
  b.invalidate("k");  // the row changed; from now on no call may get 1

  server.kill();
  server.start();
  // The restart is over and A's other traffic has reconnected its pool.
  ASSERT_TRUE(eventually([&] {
    try {
      client_a->command({"PING"});
      return true;
    } catch (const backend_error&) {
      return false;
    }
  }));
  finish.open();
  EXPECT_EQ(old_load.get(), 1);  // its own caller gets what it loaded
  EXPECT_EQ(b.get_or_compute("k", [] { return 2; }), 2) << "the load from before the invalidate was stored";
  EXPECT_EQ(a.get_or_compute("k", [] { return 3; }), 2);
  EXPECT_EQ(a.stats().stale_writes_rejected, 1u) << "the late store was not refused";
  EXPECT_EQ(b.stats().stale_writes_rejected, 0u) << "the load after the restart was not stored";
}

// ---- (e) a write that reached Redis but whose reply did not come back -------------------------

// The near cache holds "v1"; a put of "v2" (or an invalidate) reaches Redis, which applies it, but
// the reply is cut on its way back, and the tracking connection with it (its invalidation is cut
// too). The call throws backend_error, yet Redis holds the write: this process's near copy must be
// dropped whatever the outcome, or a read that finds Redis unreachable is answered from the copy
// (serve_when_redis_down) with the value the write replaced.
class RedisFaultNearWrite : public ::testing::TestWithParam<bool> {};  // true: invalidate, false: put

TEST_P(RedisFaultNearWrite, AWriteWhoseReplyWasCutStillDropsTheNearCopy) {
  const bool invalidate = GetParam();
  FaultProxy proxy(shared_server().port());
  auto client = Client::create(proxy.url(), fast_options());
  const std::string prefix = unique_prefix();
  using Store = RedisStore<std::string, stampede::StringCodec>;
  Store store(client, prefix, 60s, stampede::redis::NearCacheOptions{.enabled = true, .max_age = 1h});
  auto& near = *store.near_cache();
  ASSERT_TRUE(near.wait_for_tracking(std::chrono::steady_clock::now() + kHangGuard));
  const auto now = std::chrono::system_clock::now();
  const std::uint64_t fence =
      store.put_with_new_fence("k", stampede::Entry<std::string>{"v1", now + 1h, now + 1h, 0, 0ms}, now);
  auto near_hits = [&] {
    stampede::BackendCounters c;
    store.add_counters(c);
    return c.near_hits;
  };
  // Once the put's own invalidation has arrived, a read keeps "v1" and the next one is a near hit.
  ASSERT_TRUE(eventually([&] {
    const std::uint64_t before = near_hits();
    const auto e = store.get("k", now);
    return e && e->value == "v1" && near_hits() > before;
  }));

  // The scripts' digests are known, so that the write below is one EVALSHA (no SCRIPT LOAD first).
  (void)store.put("other", stampede::Entry<std::string>{"x", now + 1h, now + 1h, 1, 0ms}, now);
  store.invalidate("other", 1);

  proxy.cut_on_data(Direction::downstream);  // the reply and the invalidation never arrive
  if (invalidate) {
    EXPECT_THROW(store.invalidate("k", fence + 1), backend_error);
  } else {
    EXPECT_THROW(
        (void)store.put("k", stampede::Entry<std::string>{"v2", now + 1h, now + 1h, fence + 1, 0ms}, now),
        backend_error);
  }
  // Redis applied it.
  const stampede::redis::Reply held = shared_client()->command({"HGET", prefix + "{k}", "value"});
  if (invalidate) {
    EXPECT_TRUE(held.is_nil()) << held.str;
  } else {
    EXPECT_EQ(held.str, "v2");
  }
  proxy.refuse(true);  // Redis unreachable from now on, tracking down
  proxy.cut_all();
  ASSERT_TRUE(eventually([&] { return !near.tracking(); }));

  std::string served = "<backend_error>";
  try {
    const auto e = store.get("k", now);
    served = e ? e->value : "<none>";
  } catch (const backend_error&) {
  }
  EXPECT_NE(served, "v1") << "the near copy of the value the write replaced was served";
}

INSTANTIATE_TEST_SUITE_P(Writes, RedisFaultNearWrite, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return std::string(p.param ? "Invalidate" : "Put");
                         });

}  // namespace
