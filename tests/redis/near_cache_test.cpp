// tests/redis/near_cache_test.cpp: the Redis backend's near cache against a real redis-server:
// options, hits without a round trip, invalidation by other instances and by raw clients, the
// in-flight read race, the tracking connection killed, Redis restarted, max_age, max_entries,
// fences, and a stampede over four near-cached instances.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <latch>
#include <memory>
#include <mutex>
#include <stampede/redis/redis.hpp>
#include <stampede/stampede.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "instances.hpp"  // RedisStore<int>, Cache<int>, ...: compiled once
#include "redis_server.hpp"
#include "support/fault_proxy.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using redis_test::RedisServer;
using redis_test::shared_client;
using redis_test::unique_prefix;
using stampede::Cache;
using stampede::CacheOptions;
using stampede::Entry;
using stampede::StringCodec;
using stampede::redis::BackendOptions;
using stampede::redis::Client;
using stampede::redis::NearCache;
using stampede::redis::NearCacheOptions;
using stampede::redis::RedisStore;
using stampede_test::Direction;
using stampede_test::eventually;
using stampede_test::FaultProxy;
using stampede_test::ProxySnapshot;
using Store = RedisStore<std::string, StringCodec>;

// One Cache + its own Client (its own pool, lock subscriber and near cache): another process, as
// far as Redis can tell.
struct Instance {
  Instance(const std::string& url, const std::string& prefix, NearCacheOptions near = {.enabled = true},
           CacheOptions cache_options = {.ttl = 60s}, stampede::redis::ClientOptions client_options = {})
      : client(Client::connect(url, client_options)),
        backend(stampede::redis::backend<std::string, StringCodec>(
            client, BackendOptions{.prefix = prefix, .near_cache = std::move(near)})),
        store(std::dynamic_pointer_cast<Store>(backend.store)),
        cache(std::move(cache_options), backend) {}

  NearCache<std::string>& near() { return *store->near_cache(); }
  bool tracking_within_hang_guard() {
    return near().wait_for_tracking(std::chrono::steady_clock::now() + stampede_test::kHangGuard);
  }
  std::string get(const std::string& key) { return cache.get(key).value_or("<none>"); }

  std::shared_ptr<Client> client;
  stampede::Backend<std::string> backend;
  std::shared_ptr<Store> store;
  Cache<std::string> cache;
};

// @return how many HGETALLs the server has run (INFO commandstats).
long long hgetall_calls(Client& client) {
  const std::string info = client.command({"INFO", "commandstats"}).str;
  const std::string tag = "cmdstat_hgetall:calls=";
  const auto at = info.find(tag);
  return at == std::string::npos ? 0 : std::stoll(info.substr(at + tag.size()));
}

std::string url() { return redis_test::shared_server().url(); }

// A write's invalidation reaches every near cache on the prefix, the writer's own process included,
// asynchronously: a copy a read keeps before it arrives is dropped when it does. Tests that count
// near hits after a write first wait for it. BCAST tracking sends one message per written key.
// @return whether `a` received `n` more key invalidations than `before` within the hang guard.
bool invalidations_arrived(Instance& a, std::uint64_t before, std::uint64_t n = 1) {
  return eventually([&] { return a.cache.stats().near_invalidations >= before + n; });
}

std::string value_key(const std::string& prefix, const std::string& key) { return prefix + "{" + key + "}"; }

// ---- options ----------------------------------------------------------------------------------

TEST(NearCacheOptions, OffByDefaultAndValidatedWithTheFieldsName) {
  EXPECT_FALSE(NearCacheOptions{}.enabled);
  auto make = [](NearCacheOptions o) {
    (void)stampede::redis::backend<std::string, StringCodec>(shared_client(),
                                                             BackendOptions{.near_cache = std::move(o)});
  };
  try {
    make({.enabled = true, .max_entries = 0});
    FAIL() << "max_entries = 0 was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(stampede_test::mentions_word(e.what(), "max_entries")) << e.what();
  }
  try {
    make({.enabled = true, .max_age = 0ms});
    FAIL() << "max_age = 0 was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(stampede_test::mentions_word(e.what(), "max_age")) << e.what();
  }
  try {
    make({.enabled = true, .db_check_interval = -1ms});
    FAIL() << "db_check_interval < 0 was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(stampede_test::mentions_word(e.what(), "db_check_interval")) << e.what();
  }
  EXPECT_THROW(make({.enabled = false, .max_age = -1ms}), std::invalid_argument);
  auto off = stampede::redis::backend<std::string, StringCodec>(shared_client(), BackendOptions{});
  EXPECT_EQ(std::dynamic_pointer_cast<Store>(off.store)->near_cache(), nullptr);
  EXPECT_EQ(off.name, "redis");
}

// ---- hits and invalidation --------------------------------------------------------------------

TEST(NearCache, SecondReadIsANearHitWithoutARoundTrip) {
  const std::string prefix = unique_prefix();
  // Commands (the tracking connection's keepalive PING and database check among them) may take
  // 30 s: on a loaded machine a 1 s answer can come late, the tracking connection is then declared
  // lost and the near cache rightly flushed, and a read after the flush goes to Redis.
  Instance a(url(), prefix, {.enabled = true}, {.ttl = 60s}, {.command_timeout = 30s});
  ASSERT_TRUE(a.tracking_within_hang_guard());
  const std::uint64_t invalidations = a.cache.stats().near_invalidations;
  EXPECT_EQ(a.cache.get_or_compute("k", [] { return std::string("v1"); }), "v1");
  ASSERT_TRUE(invalidations_arrived(a, invalidations)) << "the load's own write was never announced";
  EXPECT_EQ(a.get("k"), "v1");  // first read after the load: from Redis, kept
  const auto before = a.cache.stats();
  const long long hgetalls = hgetall_calls(*shared_client());
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.get("k"), "v1");
  EXPECT_EQ(hgetall_calls(*shared_client()), hgetalls) << "a near hit read Redis";
  const auto after = a.cache.stats();
  EXPECT_EQ(after.near_hits - before.near_hits, 100u);
  EXPECT_EQ(after.near_misses, before.near_misses);
}

TEST(NearCache, WritesOfAnotherInstanceDropTheKey) {
  const std::string prefix = unique_prefix();
  Instance a(url(), prefix), b(url(), prefix);
  ASSERT_TRUE(a.tracking_within_hang_guard());
  ASSERT_TRUE(b.tracking_within_hang_guard());

  // B loads; A reads it into its near cache.
  const std::uint64_t invalidations = a.cache.stats().near_invalidations;
  b.cache.get_or_compute("k", [] { return std::string("loaded"); });
  ASSERT_TRUE(invalidations_arrived(a, invalidations)) << "B's write was never announced to A";
  EXPECT_EQ(a.get("k"), "loaded");
  EXPECT_EQ(a.get("k"), "loaded");
  ASSERT_GE(a.cache.stats().near_hits, 1u);

  b.cache.put("k", "put");
  EXPECT_TRUE(eventually([&] { return a.get("k") == "put"; })) << "A kept serving " << a.get("k");

  b.cache.invalidate("k");
  EXPECT_TRUE(eventually([&] { return a.get("k") == "<none>"; })) << "A kept serving " << a.get("k");

  b.cache.get_or_compute("k", [] { return std::string("reloaded"); });
  EXPECT_TRUE(eventually([&] { return a.get("k") == "reloaded"; })) << "A kept serving " << a.get("k");
  EXPECT_GE(a.cache.stats().near_invalidations, 3u);
}

TEST(NearCache, WritesOfAnotherProcessDropTheKey) {
  const std::string prefix = unique_prefix();
  Instance a(url(), prefix);
  ASSERT_TRUE(a.tracking_within_hang_guard());
  redis_test::Child b({"writer", url(), prefix});
  ASSERT_EQ(b.read_line(), "ready");
  auto run = [&](const std::string& line) {
    b.send(line);
    return b.read_line();
  };

  const std::uint64_t invalidations = a.cache.stats().near_invalidations;
  ASSERT_EQ(run("load k loaded"), "done");
  ASSERT_TRUE(invalidations_arrived(a, invalidations)) << "B's write was never announced to A";
  EXPECT_EQ(a.get("k"), "loaded");
  EXPECT_EQ(a.get("k"), "loaded");
  ASSERT_GE(a.cache.stats().near_hits, 1u);

  ASSERT_EQ(run("put k put"), "done");
  EXPECT_TRUE(eventually([&] { return a.get("k") == "put"; })) << "A kept serving " << a.get("k");
  ASSERT_EQ(run("invalidate k"), "done");
  EXPECT_TRUE(eventually([&] { return a.get("k") == "<none>"; })) << "A kept serving " << a.get("k");
  ASSERT_EQ(run("load k reloaded"), "done");
  EXPECT_TRUE(eventually([&] { return a.get("k") == "reloaded"; })) << "A kept serving " << a.get("k");
  b.send("quit");
  EXPECT_EQ(b.wait(), 0);
}

TEST(NearCache, RawClientDelAndHsetDropTheKey) {
  const std::string prefix = unique_prefix();
  Instance a(url(), prefix);
  ASSERT_TRUE(a.tracking_within_hang_guard());
  auto raw = Client::connect(url());
  a.cache.put("k", "v1");
  EXPECT_EQ(a.get("k"), "v1");
  EXPECT_EQ(a.get("k"), "v1");

  raw->command({"HSET", value_key(prefix, "k"), "value", "from-redis-cli"});
  EXPECT_TRUE(eventually([&] { return a.get("k") == "from-redis-cli"; })) << a.get("k");
  EXPECT_EQ(a.get("k"), "from-redis-cli");

  raw->command({"DEL", value_key(prefix, "k")});
  EXPECT_TRUE(eventually([&] { return a.get("k") == "<none>"; })) << a.get("k");
}

TEST(NearCache, OwnPutIsSeenAtOnce) {
  const std::string prefix = unique_prefix();
  Instance a(url(), prefix);
  ASSERT_TRUE(a.tracking_within_hang_guard());
  a.cache.put("k", "v1");
  EXPECT_EQ(a.get("k"), "v1");
  EXPECT_EQ(a.get("k"), "v1");
  a.cache.put("k", "v2");
  EXPECT_EQ(a.get("k"), "v2");  // no wait: this process's own write
  a.cache.invalidate("k");
  EXPECT_EQ(a.get("k"), "<none>");
}

// ---- the in-flight read race ------------------------------------------------------------------

// A reads "old" from Redis; before A stores that reply in its near cache, B writes "new" and A's
// tracker processes the invalidation. The old reply must stay out: A's next read is not a near
// hit of "old".
TEST(NearCache, InvalidationDuringAnInFlightReadKeepsItsResultOut) {
  const std::string prefix = unique_prefix();
  Instance a(url(), prefix), b(url(), prefix);
  ASSERT_TRUE(a.tracking_within_hang_guard());
  const std::uint64_t seen = a.cache.stats().near_invalidations;
  b.cache.put("k", "old");
  ASSERT_TRUE(eventually([&] { return a.cache.stats().near_invalidations > seen; }));

  std::atomic<bool> armed{true};
  a.near().set_reply_hook_for_testing([&](std::string_view key) {
    if (key != "k" || !armed.exchange(false)) return;
    // Between Redis's reply ("old") and the near cache's decision to keep it:
    const std::uint64_t before = a.cache.stats().near_invalidations;
    b.cache.put("k", "new");
    ASSERT_TRUE(eventually([&] { return a.cache.stats().near_invalidations > before; }));
  });
  EXPECT_EQ(a.get("k"), "old");  // the read in flight returns what it read
  EXPECT_FALSE(armed.load());
  EXPECT_EQ(a.get("k"), "new") << "the in-flight read's old value was kept in the near cache";
}

TEST(NearCache, NeverReplacesAnEntryWithALowerFence) {
  const std::string prefix = unique_prefix();
  NearCache<std::string> near(shared_client(), prefix, {.enabled = true});
  ASSERT_TRUE(near.wait_for_tracking(std::chrono::steady_clock::now() + stampede_test::kHangGuard));
  const auto now = std::chrono::system_clock::now();
  NearCache<std::string>::Ticket t1, t2;
  EXPECT_FALSE(near.lookup("k", now, t1));
  EXPECT_FALSE(near.lookup("k", now, t2));
  EXPECT_TRUE(near.insert("k", Entry<std::string>{"newer", now + 1h, now + 1h, 7, 0ms}, t1));
  EXPECT_FALSE(near.insert("k", Entry<std::string>{"older", now + 1h, now + 1h, 5, 0ms}, t2));
  NearCache<std::string>::Ticket t3;
  auto e = near.lookup("k", now, t3);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->value, "newer");
  EXPECT_EQ(e->fence, 7u);
}

// ---- losing the tracking connection -----------------------------------------------------------

TEST(NearCache, TrackingConnectionKilledFlushesThenRecovers) {
  RedisServer server;
  const std::string prefix = unique_prefix();
  std::mutex mu;
  std::vector<std::string> flushes;
  NearCacheOptions near{.enabled = true};
  near.on_event = [&](const stampede::Event& e) {
    if (e.type != stampede::EventType::near_cache_flushed) return;
    std::lock_guard l(mu);
    flushes.emplace_back(e.detail);
  };
  Instance a(server.url(), prefix, near);
  ASSERT_TRUE(a.tracking_within_hang_guard());
  const std::uint64_t invalidations = a.cache.stats().near_invalidations;
  a.cache.put("k", "v1");
  ASSERT_TRUE(invalidations_arrived(a, invalidations)) << "the put was never announced";
  EXPECT_EQ(a.get("k"), "v1");
  EXPECT_EQ(a.get("k"), "v1");
  ASSERT_GE(a.cache.stats().near_hits, 1u);

  auto raw = Client::connect(server.url());
  raw->command({"CLIENT", "KILL", "TYPE", "pubsub"});
  ASSERT_TRUE(eventually([&] { return a.cache.stats().near_flushes >= 1; }));
  {
    std::lock_guard l(mu);
    ASSERT_GE(flushes.size(), 1u);
    EXPECT_NE(flushes[0].find("tracking"), std::string::npos) << flushes[0];
  }
  // Invalidations may be missed from the kill on: a write now (the tracker may not be back yet)
  // must be seen at once.
  raw->command({"HSET", value_key(prefix, "k"), "value", "v2"});
  EXPECT_EQ(a.get("k"), "v2") << "a copy from before the flush was served";

  // Recovers: tracking again, and the near cache fills again.
  ASSERT_TRUE(a.tracking_within_hang_guard());
  EXPECT_EQ(a.get("k"), "v2");
  const auto hits = a.cache.stats().near_hits;
  EXPECT_TRUE(eventually([&] { return a.get("k") == "v2" && a.cache.stats().near_hits > hits; }));
  raw->command({"HSET", value_key(prefix, "k"), "value", "v3"});
  EXPECT_TRUE(eventually([&] { return a.get("k") == "v3"; }));
}

TEST(NearCache, RedisRestartedNoStaleValueAfterItIsDetected) {
  RedisServer server;
  const std::string prefix = unique_prefix();
  Instance a(server.url(), prefix);
  ASSERT_TRUE(a.tracking_within_hang_guard());
  const std::uint64_t invalidations = a.cache.stats().near_invalidations;
  a.cache.put("k", "before");
  ASSERT_TRUE(invalidations_arrived(a, invalidations)) << "the put was never announced";
  EXPECT_EQ(a.get("k"), "before");
  EXPECT_EQ(a.get("k"), "before");

  server.kill();
  ASSERT_TRUE(eventually([&] { return a.cache.stats().near_flushes >= 1; }));
  // Redis down (fail_open): the local copy is still served until its own expiry.
  EXPECT_EQ(a.get("k"), "before");

  server.start();  // empty: no persistence
  // Detected: whatever the tracker's state, the old copy is never a hit again.
  EXPECT_EQ(a.get("k"), "<none>");
  auto b_client = Client::connect(server.url());
  b_client->command({"HSET", value_key(prefix, "k"), "format", "1", "value", "after", "soft_expiry_ms",
                     "9999999999999", "hard_expiry_ms", "9999999999999", "fence", "1"});
  EXPECT_EQ(a.get("k"), "after");
  ASSERT_TRUE(a.tracking_within_hang_guard());
  EXPECT_EQ(a.get("k"), "after");
}

TEST(NearCache, RedisDownWithoutServeWhenDownThrowsUnderFailClosed) {
  RedisServer server;
  const std::string prefix = unique_prefix();
  Instance a(server.url(), prefix, {.enabled = true, .serve_when_redis_down = false},
             {.ttl = 60s, .backend_failure = stampede::BackendFailure::fail_closed});
  ASSERT_TRUE(a.tracking_within_hang_guard());
  a.cache.put("k", "before");
  EXPECT_EQ(a.get("k"), "before");
  server.kill();
  ASSERT_TRUE(eventually([&] { return a.cache.stats().near_flushes >= 1; }));
  EXPECT_THROW(a.cache.get("k"), stampede::backend_error);
  server.start();
}

// ---- bounds -----------------------------------------------------------------------------------

TEST(NearCache, MaxAgeBoundsEveryLocalCopy) {
  const std::string prefix = unique_prefix();
  auto clock = std::make_shared<stampede::ManualClock>();
  Instance a(url(), prefix, {.enabled = true, .max_age = 5s, .clock = clock});
  ASSERT_TRUE(a.tracking_within_hang_guard());
  const std::uint64_t invalidations = a.cache.stats().near_invalidations;
  a.cache.put("k", "v1");
  ASSERT_TRUE(invalidations_arrived(a, invalidations)) << "the put was never announced";
  EXPECT_EQ(a.get("k"), "v1");
  const auto s0 = a.cache.stats();
  EXPECT_EQ(a.get("k"), "v1");
  const auto s1 = a.cache.stats();
  EXPECT_EQ(s1.near_hits, s0.near_hits + 1);

  clock->advance(5s);  // the copy is max_age old: not served any more, Redis is asked
  EXPECT_EQ(a.get("k"), "v1");
  const auto s2 = a.cache.stats();
  EXPECT_EQ(s2.near_hits, s1.near_hits);
  EXPECT_EQ(s2.near_misses, s1.near_misses + 1);
  EXPECT_EQ(a.get("k"), "v1");  // kept again, for another max_age
  EXPECT_EQ(a.cache.stats().near_hits, s2.near_hits + 1);
}

// Near cache x fail-safe (issue 15, case 1): A's near copy of an expired value lags Redis after B
// invalidated the key (a busy writer delays A's invalidation messages). A failed load then served
// that copy as the last good value and re-armed it in Redis under a fence drawn after the
// invalidation, so every process was served the invalidated value again. The lag is made exact
// here: once B's invalidation has reached A, A's near cache is handed the old copy back.
TEST(NearCache, FailSafeNeverServesNorReArmsAValueAnotherProcessInvalidated) {
  const std::string prefix = unique_prefix();
  auto clock = std::make_shared<stampede::ManualClock>();
  const CacheOptions options{.ttl = 1s, .fail_safe_max_age = 60s, .fail_safe_throttle = 20s, .clock = clock};
  Instance a(url(), prefix, {.enabled = true}, options);
  Instance b(url(), prefix, {.enabled = false}, options);
  ASSERT_TRUE(a.tracking_within_hang_guard());
  const std::uint64_t before_load = a.cache.stats().near_invalidations;
  ASSERT_EQ(a.cache.get_or_compute("k", [] { return std::string("v1"); }), "v1");
  ASSERT_TRUE(invalidations_arrived(a, before_load)) << "A's own write was never announced";
  clock->advance(2s);  // expired: v1 is the last good value
  const std::optional<Entry<std::string>> old = a.store->get("k", clock->now());  // A's near copy
  ASSERT_TRUE(old.has_value());

  const std::uint64_t before_invalidate = a.cache.stats().near_invalidations;
  b.cache.invalidate("k");
  ASSERT_TRUE(invalidations_arrived(a, before_invalidate)) << "B's invalidation never reached A";
  NearCache<std::string>::Ticket ticket;
  ASSERT_FALSE(a.near().lookup("k", clock->now(), ticket).has_value());
  ASSERT_TRUE(a.near().insert("k", *old, ticket)) << "could not put the lagging copy back";

  auto failing = []() -> std::string { throw std::runtime_error("db down"); };
  EXPECT_THROW((void)a.cache.get_or_compute("k", failing), std::runtime_error)
      << "A was served the value B invalidated";
  EXPECT_EQ(b.get("k"), "<none>") << "the invalidated value was re-armed in Redis";
  EXPECT_EQ(a.cache.stats().fail_safe_served, 0u);
}

/// A TokenLock that forwards to another and runs `after_acquire` once a try_acquire took the lock.
class AcquireHookLock final : public stampede_test::ForwardingLock {
 public:
  AcquireHookLock(std::shared_ptr<stampede::TokenLock> inner, std::function<void()> after_acquire)
      : ForwardingLock(std::move(inner)), after_acquire_(std::move(after_acquire)) {}

 private:
  std::optional<stampede::LockToken> do_try_acquire(std::string_view key,
                                                    std::chrono::milliseconds ttl) override {
    std::optional<stampede::LockToken> token = ForwardingLock::do_try_acquire(key, ttl);
    if (token) after_acquire_();
    return token;
  }

  std::function<void()> after_acquire_;
};

// Near cache x the leader's double check: between a leader's first read (a miss: B had invalidated
// the key) and its double check under the lock, another read of A's process put back a copy it had
// read from Redis before B's invalidate (its message still on its way). The double check read that
// lagging copy and handed every caller of the flight a value invalidated before their call.
TEST(NearCache, TheLeadersDoubleCheckUnderTheLockNeverReadsALaggingNearCopy) {
  const std::string prefix = unique_prefix();
  Instance a(url(), prefix);
  Instance b(url(), prefix, {.enabled = false});
  ASSERT_TRUE(a.tracking_within_hang_guard());
  const std::uint64_t before_put = a.cache.stats().near_invalidations;
  a.cache.put("k", "v0");
  ASSERT_TRUE(invalidations_arrived(a, before_put));
  const std::optional<Entry<std::string>> old = a.store->get("k", std::chrono::system_clock::now());
  ASSERT_TRUE(old.has_value());
  const std::uint64_t before_invalidate = a.cache.stats().near_invalidations;
  b.cache.invalidate("k");
  ASSERT_TRUE(invalidations_arrived(a, before_invalidate));

  // A Cache of A's process whose lock, once taken, lets the lagging copy into A's near cache.
  std::atomic<bool> lagged{false};
  auto lock = std::make_shared<AcquireHookLock>(a.backend.lock, [&] {
    NearCache<std::string>::Ticket ticket;
    if (!a.near().lookup("k", std::chrono::system_clock::now(), ticket)) {
      lagged = a.near().insert("k", *old, ticket);
    }
  });
  Cache<std::string> leader({.ttl = 60s}, {a.backend.store, lock, "redis"});
  EXPECT_EQ(leader.get_or_compute("k", [] { return std::string("v1"); }), "v1")
      << "the double check served a value another process had invalidated";
  EXPECT_TRUE(lagged.load()) << "the lagging copy was not put back: the test did not test";
}

TEST(NearCache, MaxEntriesBoundsTheNearCache) {
  const std::string prefix = unique_prefix();
  Instance a(url(), prefix, {.enabled = true, .max_entries = 8});
  ASSERT_TRUE(a.tracking_within_hang_guard());
  for (int i = 0; i < 100; ++i) {
    const std::string k = "k" + std::to_string(i);
    const std::uint64_t invalidations = a.cache.stats().near_invalidations;
    a.cache.put(k, "v");
    ASSERT_TRUE(invalidations_arrived(a, invalidations)) << "the put of " << k << " was never announced";
    EXPECT_EQ(a.get(k), "v");
    EXPECT_LE(a.near().size(), 8u);
  }
  EXPECT_EQ(a.near().size(), 8u);
  EXPECT_EQ(a.get("k99"), "v");
}

// ---- stampede protection is unchanged ---------------------------------------------------------

TEST(NearCache, ThousandCallersOverFourNearCachedInstancesMakeOneLoad) {
  const std::string prefix = unique_prefix();
  std::vector<std::unique_ptr<Instance>> instances;
  for (int i = 0; i < 4; ++i) {
    instances.push_back(
        std::make_unique<Instance>(url(), prefix, NearCacheOptions{.enabled = true},
                                   CacheOptions{.ttl = 60s, .lock_ttl = 10s, .wait_timeout = 30s}));
    ASSERT_TRUE(instances.back()->tracking_within_hang_guard());
  }
  constexpr int kCallers = 1000;
  std::atomic<int> loads{0};
  std::latch start(kCallers);
  std::vector<std::thread> threads;
  std::vector<std::string> got(kCallers);
  threads.reserve(kCallers);
  for (int i = 0; i < kCallers; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      got[i] = instances[i % 4]->cache.get_or_compute("cold", [&] {
        loads.fetch_add(1);
        std::this_thread::sleep_for(50ms);  // a slow loader; the assertion does not depend on it
        return std::string("value");
      });
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(loads.load(), 1);
  for (const auto& v : got) EXPECT_EQ(v, "value");
  // Afterwards every instance serves the key from its near cache.
  for (auto& in : instances) {
    EXPECT_TRUE(eventually([&] {
      const auto h = in->cache.stats().near_hits;
      return in->get("cold") == "value" && in->cache.stats().near_hits > h;
    }));
  }
}

// ---- messages read together with the SUBSCRIBE confirmation -----------------------------------

// hiredis reads whatever the socket holds: an invalidation that Redis writes in the same write as
// the tracker's SUBSCRIBE confirmation is in hiredis's buffer, not in the socket, once the
// confirmation is returned. It must be dispatched then, not when the next bytes arrive (here never:
// the keepalive is an hour away). The server is stopped (SIGSTOP) while the SUBSCRIBE and another
// client's HSET reach it, so that it runs both in one turn of its event loop and writes the
// confirmation and the invalidation to the tracker at once.
TEST(NearCache, AnInvalidationReadTogetherWithTheSubscribeConfirmationIsDispatched) {
  RedisServer server;
  FaultProxy proxy(server.port());
  const std::string prefix = unique_prefix();
  auto writer = Client::connect(server.url())->open_connection();  // directly, not through the proxy
  proxy.stall(Direction::upstream);  // every request of the tracker waits in the proxy
  auto client =
      Client::create(proxy.url(), stampede::redis::ClientOptions{.connect_timeout = stampede_test::kHangGuard,
                                                                 .command_timeout = stampede_test::kHangGuard,
                                                                 .keepalive_interval = 1h});
  NearCache<std::string> near(client, prefix, {.enabled = true});

  // Let the tracker's requests through one at a time, each with its reply, until the one waiting
  // is its SUBSCRIBE.
  const std::uint64_t subscribe_size =
      std::string_view("*2\r\n$9\r\nSUBSCRIBE\r\n$20\r\n__redis__:invalidate\r\n").size();
  auto conn = [&](std::uint64_t id) { return *proxy.snapshot().find(id); };
  std::uint64_t id = 0;
  for (;;) {
    ASSERT_TRUE(proxy.wait_until([&](const ProxySnapshot& s) {
      for (const auto& c : s.connections) {
        if (c.open && c.held(Direction::upstream) > 0) {
          id = c.id;
          return true;
        }
      }
      return false;
    })) << "the tracker sent nothing";
    if (conn(id).held(Direction::upstream) == subscribe_size) break;
    proxy.stall(id, Direction::downstream);
    const std::uint64_t replied = conn(id).received[1];
    proxy.resume(id, Direction::upstream);
    ASSERT_TRUE(proxy.wait_until([&](const ProxySnapshot& s) {
      const auto* c = s.find(id);
      return c->held(Direction::upstream) == 0 && c->received[1] > replied;
    })) << "no reply to request "
        << id;
    proxy.stall(id, Direction::upstream);
    proxy.resume(id, Direction::downstream);
  }

  server.pause();
  {
    redis_test::ResumeOnExit resume(server);
    proxy.resume(id, Direction::upstream);
    ASSERT_TRUE(
        proxy.wait_until([&](const ProxySnapshot& s) { return s.find(id)->held(Direction::upstream) == 0; }));
    writer->send({"HSET", value_key(prefix, "k"), "value", "x"});
  }
  proxy.resume(Direction::upstream);
  stampede::BackendCounters counters;
  EXPECT_TRUE(eventually([&] {
    counters = {};
    near.add_counters(counters);
    return counters.near_invalidations >= 1;
  })) << "the invalidation read with the SUBSCRIBE confirmation was not dispatched";
  EXPECT_TRUE(near.wait_for_tracking(std::chrono::steady_clock::now() + stampede_test::kHangGuard));
}

// ---- database changes without per-key invalidations -------------------------------------------

// Client-side caching tracks key names, not databases: Redis announces a write to `{prefix}{k}`
// in any database to every tracker of the prefix (a false invalidation for the other databases,
// harmless), and FLUSHDB of any database as "everything". SWAPDB announces nothing (Redis 7.0:
// no invalidation, no keyspace event). The fixture: A reads database 0 with a near cache whose
// copies never age (max_age an hour on a clock that does not move), B writes database 1 under
// the same prefix, C reads database 0 without a near cache.
struct Databases {
  explicit Databases(NearCacheOptions near = {.enabled = true})
      : prefix(unique_prefix()),
        a(server.url(), prefix, with_manual_clock(std::move(near), clock)),
        b(server.url() + "/1", prefix, {}),
        c(server.url(), prefix, {}),
        raw(Client::connect(server.url())) {}

  static NearCacheOptions with_manual_clock(NearCacheOptions o,
                                            const std::shared_ptr<stampede::ManualClock>& c) {
    o.max_age = 1h;
    o.clock = c;
    return o;
  }
  // Waits until A serves `value` for "k" from its near cache.
  bool a_holds(const std::string& value) {
    return eventually([&] {
      const auto hits = a.cache.stats().near_hits;
      return a.get("k") == value && a.cache.stats().near_hits > hits;
    });
  }

  RedisServer server;  // its own: SWAPDB and FLUSHDB are server-wide
  std::shared_ptr<stampede::ManualClock> clock = std::make_shared<stampede::ManualClock>();
  std::string prefix;
  Instance a, b, c;
  std::shared_ptr<Client> raw;  // database 0
};

TEST(NearCacheDatabases, SwapdbIsNoticedAndTheOldDatabasesCopiesAreDropped) {
  Databases d;
  ASSERT_TRUE(d.a.tracking_within_hang_guard());
  d.a.cache.put("k", "db0");
  d.b.cache.put("k", "db1");  // announced to A too (same key name): A reads database 0 again
  ASSERT_TRUE(d.a_holds("db0"));

  d.raw->command({"SWAPDB", "0", "1"});
  EXPECT_EQ(d.c.get("k"), "db1");
  EXPECT_TRUE(eventually([&] { return d.a.get("k") == "db1"; }))
      << "A kept serving the old database 0's value after SWAPDB";
  EXPECT_GE(d.a.cache.stats().near_flushes, 1u);
}

// FLUSHDB of database 1 (announced as "everything"), then SWAPDB: database 0 is now empty.
TEST(NearCacheDatabases, FlushdbOfAnotherDatabaseThenSwapdbIsNoticed) {
  Databases d;
  ASSERT_TRUE(d.a.tracking_within_hang_guard());
  d.a.cache.put("k", "db0");
  ASSERT_TRUE(d.a_holds("db0"));
  const auto flushes = d.a.cache.stats().near_flushes;
  d.b.client->command({"FLUSHDB"});
  ASSERT_TRUE(eventually([&] { return d.a.cache.stats().near_flushes > flushes; }))
      << "FLUSHDB of database 1 was not announced to a tracker of database 0";
  ASSERT_TRUE(d.a_holds("db0"));

  d.raw->command({"SWAPDB", "0", "1"});
  EXPECT_EQ(d.c.get("k"), "<none>");
  EXPECT_TRUE(eventually([&] { return d.a.get("k") == "<none>"; }))
      << "A kept serving the old database 0's value after SWAPDB";
}

// Without the database check (db_check_interval = 0), nothing tells A about a SWAPDB: its copy is
// served until max_age. This is the staleness the check bounds.
TEST(NearCacheDatabases, WithoutTheDatabaseCheckASwapdbIsServedUntilMaxAge) {
  Databases d({.enabled = true, .db_check_interval = 0ms});
  ASSERT_TRUE(d.a.tracking_within_hang_guard());
  d.a.cache.put("k", "db0");
  d.b.cache.put("k", "db1");
  ASSERT_TRUE(d.a_holds("db0"));
  d.raw->command({"SWAPDB", "0", "1"});
  EXPECT_EQ(d.c.get("k"), "db1");
  EXPECT_EQ(d.a.get("k"), "db0");  // not noticed
  d.clock->advance(1h);
  EXPECT_EQ(d.a.get("k"), "db1");
}

// Commands that move values between databases or replace them wholesale are announced per key:
// after each, A serves what C reads.
struct Replacement {
  const char* name;
  std::function<void(Databases&)> run;
  const char* expected;
};

class NearCacheReplacements : public ::testing::TestWithParam<Replacement> {};

TEST_P(NearCacheReplacements, AreAnnouncedPerKey) {
  Databases d;
  ASSERT_TRUE(d.a.tracking_within_hang_guard());
  d.b.cache.put("k", "db1");
  d.b.cache.put("k2", "db1-k2");
  d.a.cache.put("k", "db0");
  d.a.cache.put("k2", "db0-k2");
  ASSERT_TRUE(d.a_holds("db0"));
  GetParam().run(d);
  EXPECT_EQ(d.c.get("k"), GetParam().expected);
  EXPECT_TRUE(eventually([&] { return d.a.get("k") == GetParam().expected; }))
      << "A kept serving " << d.a.get("k") << " after " << GetParam().name;
}

INSTANTIATE_TEST_SUITE_P(
    Commands, NearCacheReplacements,
    ::testing::Values(
        Replacement{"Move",
                    [](Databases& d) {
                      d.b.client->command({"DEL", value_key(d.prefix, "k")});
                      d.raw->command({"MOVE", value_key(d.prefix, "k"), "1"});
                    },
                    "<none>"},
        Replacement{"CopyReplace",
                    [](Databases& d) {
                      d.b.client->command(
                          {"COPY", value_key(d.prefix, "k"), value_key(d.prefix, "k"), "DB", "0", "REPLACE"});
                    },
                    "db1"},
        Replacement{"RestoreReplace",
                    [](Databases& d) {
                      const std::string dump = d.b.client->command({"DUMP", value_key(d.prefix, "k")}).str;
                      d.raw->command({"RESTORE", value_key(d.prefix, "k"), "0", dump, "REPLACE"});
                    },
                    "db1"},
        Replacement{"Rename",
                    [](Databases& d) {
                      d.raw->command({"RENAME", value_key(d.prefix, "k2"), value_key(d.prefix, "k")});
                    },
                    "db0-k2"}),
    [](const ::testing::TestParamInfo<Replacement>& p) { return std::string(p.param.name); });

}  // namespace
