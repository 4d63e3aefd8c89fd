// tests/redis/store_test.cpp: RedisBytesStore, RedisStore<T> and Cache<T> over Redis: the wire format,
// which codecs RedisStore accepts, fences, garbage, binary keys and big values, grace for serve_stale,
// SWR across caches, fail_open/fail_closed, Redis killed during a stampede, SCRIPT FLUSH.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <latch>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <stampede/redis/redis.hpp>
#include <stampede/stampede.hpp>
#include <string>
#include <thread>
#include <vector>

#include "instances.hpp"  // RedisStore<int>, Cache<int>, ...: compiled once
#include "redis_server.hpp"
#include "support/test_support.hpp"

namespace shop {
struct Item {
  int id = 0;
  std::string name;
  friend bool operator==(const Item&, const Item&) = default;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Item, id, name)
struct NotJson {
  int id = 0;
};
}  // namespace shop

namespace {

using namespace std::chrono_literals;
using redis_test::shared_client;
using redis_test::unique_prefix;
using shop::Item;
using stampede::Cache;
using stampede::CacheOptions;
using stampede::Entry;
using stampede::PutResult;
using stampede::redis::Client;
using stampede::redis::RedisStore;
using stampede::redis::RedisTokenLock;
using time_point = std::chrono::system_clock::time_point;

std::map<std::string, std::string> hgetall(Client& client, const std::string& key) {
  std::map<std::string, std::string> out;
  auto r = client.command({"HGETALL", key});
  for (std::size_t i = 0; i + 1 < r.elements.size(); i += 2) out[r.elements[i].str] = r.elements[i + 1].str;
  return out;
}

TEST(RedisWireFormat, ValueIsAHashReadableWithAPlainClientAndAJsonParser) {
  auto client = shared_client();
  const std::string prefix = unique_prefix();
  Cache<Item> cache({.ttl = 30s}, stampede::redis::backend<Item>(client, prefix));
  const auto before = std::chrono::system_clock::now();
  cache.get_or_compute("item:1", [] { return Item{1, "apple"}; });

  // What docs/wire-format.md tells another language to do: HGETALL, then parse `value` as JSON.
  auto h = hgetall(*client, prefix + "{item:1}");
  EXPECT_EQ(h["format"], "1");
  const auto value = nlohmann::json::parse(h["value"]);
  EXPECT_EQ(value["id"], 1);
  EXPECT_EQ(value["name"], "apple");
  EXPECT_GE(std::stoull(h["fence"]), 1u);
  const auto soft = std::stoll(h["soft_expiry_ms"]), hard = std::stoll(h["hard_expiry_ms"]);
  const auto before_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(before.time_since_epoch()).count();
  EXPECT_EQ(soft, hard);  // blocking mode
  // The default clock may be coarse (a few ms), so compare with a second of slack.
  EXPECT_GE(hard, before_ms + 29000);
  EXPECT_LE(hard, std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                          .count() +
                      31000);
  EXPECT_TRUE(h.contains("load_time_ms"));
  // The key outlives its hard expiry by the grace period (for serve_stale), and no longer.
  const long long pttl = client->command({"PTTL", prefix + "{item:1}"}).integer;
  EXPECT_GT(pttl, 30000);
  EXPECT_LE(pttl, 30000 + stampede::redis::kDefaultGrace.count() + 1);
}

// RedisStore<T, C> exists only where C is a codec of T: JSON needs to_json/from_json for T.
template <class T, class C = stampede::JsonCodec<T>>
concept RedisStorable = requires { typename RedisStore<T, C>; };
static_assert(RedisStorable<Item>);
static_assert(RedisStorable<std::string, stampede::StringCodec>);
static_assert(!RedisStorable<shop::NotJson>, "RedisStore of a type its default codec cannot write");
static_assert(!RedisStorable<int, stampede::StringCodec>, "RedisStore with a codec of another type");

TEST(RedisBytesStore, KeepsTheBytesAsTheyAreWithTheirExpiriesAndFence) {
  auto client = shared_client();
  const std::string prefix = unique_prefix();
  stampede::redis::RedisBytesStore store(client, prefix);
  const time_point now(std::chrono::milliseconds(1'700'000'000'000));
  const std::string bytes("a\0b\xff", 4);
  const std::uint64_t fence = RedisTokenLock(client, prefix).bump_fence("k");  // a fence of this server
  const Entry<std::string> entry{bytes, now + 10s, now + 20s, fence, 15ms};
  ASSERT_EQ(store.put("k", entry, now), PutResult::stored);
  EXPECT_EQ(hgetall(*client, prefix + "{k}")["value"], bytes) << "the bytes were changed on the way";
  const std::optional<Entry<std::string>> got = store.get("k", now);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->value, bytes);
  EXPECT_EQ(got->soft_expiry, entry.soft_expiry);
  EXPECT_EQ(got->hard_expiry, entry.hard_expiry);
  EXPECT_EQ(got->fence, fence);
  EXPECT_EQ(got->load_time, 15ms);
  EXPECT_FALSE(store.get("k", now + 20s)) << "an entry past its hard expiry was returned";
  EXPECT_THROW(stampede::redis::RedisBytesStore(nullptr, prefix), std::invalid_argument);
  EXPECT_THROW(stampede::redis::RedisBytesStore(client, "a{b"), std::invalid_argument);
  EXPECT_THROW(stampede::redis::RedisBytesStore(client, prefix, -1ms), std::invalid_argument);
}

TEST(RedisStore, RefusesAWriteWithALowerFenceAndInvalidateRaisesTheFloor) {
  auto client = shared_client();
  const std::string prefix = unique_prefix();
  RedisStore<std::string, stampede::StringCodec> store(client, prefix);
  const auto now = std::chrono::system_clock::now();
  auto entry = [&](std::string v, std::uint64_t fence) {
    return Entry<std::string>{
        .value = std::move(v), .soft_expiry = now + 1min, .hard_expiry = now + 1min, .fence = fence};
  };
  const std::uint64_t f = RedisTokenLock(client, prefix).bump_fence("k");  // the hash is born with f
  EXPECT_EQ(store.put("k", entry("five", f + 5), now), PutResult::stored);
  EXPECT_EQ(store.put("k", entry("three", f + 3), now), PutResult::stale_fence);
  EXPECT_EQ(store.get("k", now)->value, "five");
  EXPECT_EQ(store.put("k", entry("five again", f + 5), now), PutResult::stored);  // equal fence: same holder
  store.invalidate("k", f + 7);
  EXPECT_FALSE(store.get("k", now));
  EXPECT_EQ(store.put("k", entry("six", f + 6), now), PutResult::stale_fence);
  EXPECT_FALSE(store.get("k", now));
  EXPECT_EQ(store.put("k", entry("eight", f + 8), now), PutResult::stored);
  auto e = store.get("k", now);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->value, "eight");
  EXPECT_EQ(e->fence, f + 8);
}

// Redis knows nothing of the fences handed out for a key without a fence hash (never made on this
// server, or lost): a fence drawn before the loss may belong to a load that an invalidation has
// since overtaken, so every fence is refused; the refusal makes the hash, born with a fence drawn
// from the server's clock, above every fence handed out before.
TEST(RedisStore, RefusesEveryFenceForAKeyWithNoFenceHashAndMakesTheHashBornAboveThem) {
  auto client = shared_client();
  const std::string prefix = unique_prefix();
  RedisStore<std::string, stampede::StringCodec> store(client, prefix);
  RedisTokenLock lock(client, prefix);
  const auto now = std::chrono::system_clock::now();
  const Entry<std::string> small{
      .value = "v", .soft_expiry = now + 1min, .hard_expiry = now + 1min, .fence = 5};
  EXPECT_EQ(store.put("never fenced", small, now), PutResult::stale_fence);
  EXPECT_FALSE(store.get("never fenced", now));

  const std::uint64_t old = lock.bump_fence("k");
  ASSERT_EQ(client->command({"DEL", prefix + "fence:{k}"}).integer, 1);  // Redis loses it
  Entry<std::string> e = small;
  e.fence = old;
  EXPECT_EQ(store.put("k", e, now), PutResult::stale_fence) << "a fence from before the loss was trusted";
  EXPECT_FALSE(store.get("k", now));
  auto h = hgetall(*client, prefix + "fence:{k}");
  ASSERT_TRUE(h.contains("born")) << "the refusal did not make the fence hash";
  EXPECT_GT(std::stoull(h["born"]), old);
  EXPECT_GE(std::stoull(h["next"]), std::stoull(h["born"]));
  EXPECT_GT(client->command({"PTTL", prefix + "fence:{k}"}).integer, 0);
  EXPECT_EQ(store.put("k", e, now), PutResult::stale_fence) << "the same fence, now below born";
  e.fence = lock.bump_fence("k");  // drawn after the hash was made
  EXPECT_EQ(store.put("k", e, now), PutResult::stored);
}

TEST(RedisStore, RefusesAFenceBelowTheOneTheFenceHashWasBornWith) {
  auto client = shared_client();
  const std::string prefix = unique_prefix();
  RedisStore<std::string, stampede::StringCodec> store(client, prefix);
  RedisTokenLock lock(client, prefix);
  const auto now = std::chrono::system_clock::now();
  auto before = lock.try_acquire("k", 10s);  // a holder from before the loss, still loading
  ASSERT_TRUE(before);
  ASSERT_EQ(client->command({"DEL", prefix + "fence:{k}"}).integer, 1);
  const std::uint64_t after = lock.bump_fence("k");  // e.g. an invalidate after the loss: born = after
  auto h = hgetall(*client, prefix + "fence:{k}");
  EXPECT_EQ(h["born"], std::to_string(after));
  EXPECT_FALSE(h.contains("floor")) << "then the floor would refuse it, not born";
  Entry<std::string> e{
      .value = "late", .soft_expiry = now + 1min, .hard_expiry = now + 1min, .fence = before->fence};
  EXPECT_EQ(store.put("k", e, now), PutResult::stale_fence) << "a fence below born was accepted";
  e.value = "new";
  e.fence = after;
  EXPECT_EQ(store.put("k", e, now), PutResult::stored) << "born itself is vouched for";
  EXPECT_EQ(store.get("k", now)->value, "new");
  EXPECT_TRUE(lock.release("k", before->token));
}

TEST(RedisStore, AfterFlushallTheFenceHashIsBornAgainAndAFenceDrawnAfterItIsAccepted) {
  redis_test::RedisServer server;  // a server of its own: the test flushes it
  auto client = Client::connect(server.url());
  RedisStore<std::string, stampede::StringCodec> store(client, "p:");
  RedisTokenLock lock(client, "p:");
  const auto now = std::chrono::system_clock::now();
  auto first = lock.try_acquire("k", 10s);
  ASSERT_TRUE(first);
  Entry<std::string> e{
      .value = "v1", .soft_expiry = now + 1min, .hard_expiry = now + 1min, .fence = first->fence};
  ASSERT_EQ(store.put("k", e, now), PutResult::stored);
  client->command({"FLUSHALL"});
  e.value = "v1 again";
  EXPECT_EQ(store.put("k", e, now), PutResult::stale_fence) << "a fence from before FLUSHALL was trusted";
  EXPECT_FALSE(store.get("k", now));
  auto next = lock.try_acquire("k", 10s);  // the lock was flushed too
  ASSERT_TRUE(next);
  EXPECT_GE(next->fence, std::stoull(hgetall(*client, "p:fence:{k}")["born"]));
  e.value = "v2";
  e.fence = next->fence;
  EXPECT_EQ(store.put("k", e, now), PutResult::stored);
  EXPECT_EQ(store.get("k", now)->value, "v2");
  EXPECT_TRUE(lock.release("k", next->token));
}

TEST(RedisStore, PutWithANewFenceDrawsItOnTheServerAndWinsOverEverythingBefore) {
  auto client = shared_client();
  const std::string prefix = unique_prefix();
  RedisStore<std::string, stampede::StringCodec> store(client, prefix);
  RedisTokenLock lock(client, prefix);
  const auto now = std::chrono::system_clock::now();
  Entry<std::string> e{.value = "direct", .soft_expiry = now + 1min, .hard_expiry = now + 1min, .fence = 1};
  const std::uint64_t f1 = store.put_with_new_fence("fresh", e, now);  // no fence hash yet
  auto got = store.get("fresh", now);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->value, "direct");
  EXPECT_EQ(got->fence, f1);
  EXPECT_EQ(hgetall(*client, prefix + "fence:{fresh}")["born"], std::to_string(f1));

  auto holder = lock.try_acquire("k", 10s);  // a load in flight
  ASSERT_TRUE(holder);
  store.invalidate("k", holder->fence + 1000);
  const std::uint64_t f2 = store.put_with_new_fence("k", e, now);
  EXPECT_GT(f2, holder->fence + 1000) << "below an invalidation that came first";
  EXPECT_EQ(store.get("k", now)->fence, f2);
  e.value = "the load's";
  e.fence = holder->fence;
  EXPECT_EQ(store.put("k", e, now), PutResult::stale_fence) << "a load older than the put overwrote it";
  EXPECT_EQ(store.get("k", now)->value, "direct");
  EXPECT_TRUE(lock.release("k", holder->token));
}

// A fence hash without `born`, as a process of an earlier version of this library makes it:
// it vouches for every fence at or above its floor (docs/wire-format.md, "Versions").
TEST(RedisStore, AFenceHashWithoutBornVouchesForFencesAtOrAboveItsFloor) {
  auto client = shared_client();
  const std::string prefix = unique_prefix();
  RedisStore<std::string, stampede::StringCodec> store(client, prefix);
  client->command({"HSET", prefix + "fence:{k}", "next", "100", "floor", "50"});
  const auto now = std::chrono::system_clock::now();
  Entry<std::string> e{.value = "v", .soft_expiry = now + 1min, .hard_expiry = now + 1min, .fence = 40};
  EXPECT_EQ(store.put("k", e, now), PutResult::stale_fence);
  e.fence = 60;
  EXPECT_EQ(store.put("k", e, now), PutResult::stored);
  EXPECT_FALSE(hgetall(*client, prefix + "fence:{k}").contains("born")) << "a put added born";
}

TEST(RedisStore, TheFenceHashOutlivesTheValueAndExpiresByItself) {
  auto client = shared_client();
  const std::string prefix = unique_prefix();
  RedisStore<std::string, stampede::StringCodec> store(client, prefix);
  const auto now = std::chrono::system_clock::now();
  const Entry<std::string> entry{.value = "v",
                                 .soft_expiry = now + 10min,
                                 .hard_expiry = now + 10min,
                                 .fence = RedisTokenLock(client, prefix).bump_fence("k")};
  ASSERT_EQ(store.put("k", entry, now), PutResult::stored);
  const long long value_ttl = client->command({"PTTL", prefix + "{k}"}).integer;
  const long long fence_ttl = client->command({"PTTL", prefix + "fence:{k}"}).integer;
  EXPECT_GT(value_ttl, 0);
  EXPECT_GE(fence_ttl, value_ttl) << "the floor could vanish while the value it protects is still there";
  store.invalidate("gone", 4);
  EXPECT_GT(client->command({"PTTL", prefix + "fence:{gone}"}).integer, 0);
}

TEST(RedisCache, AKeyStaysCacheableAfterRedisLosesItsFenceHashDuringALoad) {
  redis_test::RedisServer server;  // a server of its own: the test flushes it
  auto client = Client::connect(server.url());
  auto clock = std::make_shared<stampede::ManualClock>(std::chrono::system_clock::now());
  std::vector<std::string> rejected;
  CacheOptions options{.ttl = 10s, .clock = clock};
  options.on_event = [&](const stampede::Event& e) {
    if (e.type == stampede::EventType::stale_write_rejected) rejected.emplace_back(e.key);
  };
  Cache<std::string> cache(options, stampede::redis::backend<std::string>(client, "p:"));
  for (int i = 0; i < 20; ++i) cache.invalidate("k");  // the key's fences are well above 1 now
  // Redis loses everything while a load is in flight; the late write meets no fence hash. Its
  // fence was drawn before the loss, so Redis cannot tell it from one an invalidation overtook:
  // refused, counted and reported, and its caller still gets the value.
  EXPECT_EQ(cache.get_or_compute("k",
                                 [&] {
                                   client->command({"FLUSHALL"});
                                   return std::string("v1");
                                 }),
            "v1");
  EXPECT_EQ(cache.stats().stale_writes_rejected, 1u);
  EXPECT_EQ(rejected, std::vector<std::string>{"k"});
  EXPECT_FALSE(cache.get("k"));
  const std::uint64_t born = std::stoull(hgetall(*client, "p:fence:{k}")["born"]);
  // The key is loaded once more (with a fence drawn after the loss), then hit.
  int loads = 0;
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(cache.get_or_compute("k",
                                   [&] {
                                     ++loads;
                                     return std::string("v2");
                                   }),
              "v2");
  }
  EXPECT_EQ(loads, 1) << "every call loaded: the key became uncacheable";
  EXPECT_EQ(cache.stats().stale_writes_rejected, 1u);
  EXPECT_GT(std::stoull(hgetall(*client, "p:{k}")["fence"]), born);
  EXPECT_GT(client->command({"PTTL", "p:fence:{k}"}).integer, 0);
}

TEST(RedisStore, KeepsAnExpiredValueForTheGracePeriodForServeStale) {
  auto clock = std::make_shared<stampede::ManualClock>(std::chrono::system_clock::now());
  auto backend = stampede::redis::backend<std::string>(shared_client(), unique_prefix(), 10min);
  auto store = backend.store;
  Cache<std::string> cache({.ttl = 1s, .clock = clock}, backend);
  cache.put("k", "v1");
  clock->advance(2s);
  EXPECT_FALSE(cache.get("k")) << "past its hard expiry by the cache's clock";
  auto stale = store->get("k", time_point::min());
  ASSERT_TRUE(stale) << "the value key did not outlive its hard expiry";
  EXPECT_EQ(stale->value, "v1");
}

TEST(RedisCache, ServeStaleGetsTheOldValueWhileAnotherProcessLoads) {
  auto clock = std::make_shared<stampede::ManualClock>(std::chrono::system_clock::now());
  const std::string prefix = unique_prefix();
  CacheOptions opts{.ttl = 1s,
                    .lock_ttl = 60s,
                    .wait_timeout = 50ms,
                    .on_wait_timeout = stampede::OnWaitTimeout::serve_stale,
                    .clock = clock};
  Cache<std::string> a(opts, stampede::redis::backend<std::string>(shared_client(), prefix));
  Cache<std::string> b(opts, stampede::redis::backend<std::string>(shared_client(), prefix));
  a.put("k", "old");
  clock->advance(2s);
  stampede_test::Gate loading, finish;
  std::thread loader([&] {
    EXPECT_EQ(a.get_or_compute("k",
                               [&] {
                                 loading.open();
                                 finish.wait();
                                 return std::string("new");
                               }),
              "new");
  });
  {
    stampede_test::OpenOnExit release(finish);
    loading.wait();
    EXPECT_EQ(b.get_or_compute("k", [] { return std::string("b loaded"); }), "old");
  }
  loader.join();
  EXPECT_EQ(b.stats().wait_timeouts, 1u);
  EXPECT_EQ(b.stats().loads, 0u);
}

TEST(RedisCache, GarbageAtTheValueKeyIsAMissCountedAndReplaced) {
  auto client = shared_client();
  const std::string prefix = unique_prefix();
  std::vector<std::string> decode_events;
  std::mutex mu;
  CacheOptions opts{.ttl = 30s};
  opts.on_event = [&](const stampede::Event& e) {
    if (e.type == stampede::EventType::decode_failed) {
      std::lock_guard l(mu);
      decode_events.emplace_back(e.key);
    }
  };
  Cache<Item> cache(opts, stampede::redis::backend<Item>(client, prefix));

  client->command({"SET", prefix + "{a}", "\xff\xfe not a hash"});
  EXPECT_EQ(cache.get_or_compute("a", [] { return Item{1, "a"}; }), (Item{1, "a"}));
  client->command({"HSET", prefix + "{b}", "format", "1", "fence", "1", "soft_expiry_ms", "99999999999999",
                   "hard_expiry_ms", "99999999999999", "value", "{not json"});
  EXPECT_EQ(cache.get_or_compute("b", [] { return Item{2, "b"}; }), (Item{2, "b"}));
  client->command({"HSET", prefix + "{c}", "format", "2", "value", "{}"});  // a future format
  EXPECT_EQ(cache.get_or_compute("c", [] { return Item{3, "c"}; }), (Item{3, "c"}));

  const auto s = cache.stats();
  // Each miss reads the key twice (first look, then the double check under the lock): both count.
  EXPECT_GE(s.decode_errors, 3u);
  EXPECT_EQ(s.loads, 3u);
  EXPECT_EQ(std::set<std::string>(decode_events.begin(), decode_events.end()),
            (std::set<std::string>{"a", "b", "c"}));
  // Replaced: the next reads are hits.
  EXPECT_EQ(cache.get_or_compute("a", [] { return Item{9, "x"}; }).id, 1);
  EXPECT_EQ(cache.get_or_compute("b", [] { return Item{9, "x"}; }).id, 2);
  EXPECT_EQ(cache.get_or_compute("c", [] { return Item{9, "x"}; }).id, 3);
  EXPECT_EQ(cache.stats().hits, 3u);
  EXPECT_EQ(hgetall(*client, prefix + "{a}")["format"], "1");
}

TEST(RedisCache, BinaryKeysAndOneMebibyteValues) {
  const std::string prefix = unique_prefix();
  Cache<std::string> cache(
      {.ttl = 30s}, stampede::redis::backend<std::string, stampede::StringCodec>(shared_client(), prefix));
  std::string big(1 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 7 + i / 256) % 256);
  const std::vector<std::string> keys = {
      "with spaces", "with\nnewlines\r\n", std::string("nul\0one", 7), std::string("nul\0two", 7), "{braces}",
      "}x{"};
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const std::string value = big + keys[i];
    EXPECT_TRUE(cache.get_or_compute(keys[i], [&] { return value; }) == value);
  }
  for (std::size_t i = 0; i < keys.size(); ++i) {
    auto got = cache.get(keys[i]);
    ASSERT_TRUE(got) << i;
    EXPECT_TRUE(*got == big + keys[i]) << "value of key " << i << " came back different";
  }
  EXPECT_EQ(cache.stats().loads, keys.size());
}

TEST(RedisCache, InvalidateBeatsALoadThatStartedBeforeIt) {
  const std::string prefix = unique_prefix();
  Cache<std::string> cache({.ttl = 30s}, stampede::redis::backend<std::string>(shared_client(), prefix));
  Cache<std::string> other({.ttl = 30s}, stampede::redis::backend<std::string>(shared_client(), prefix));
  const std::string v = cache.get_or_compute("k", [&] {
    other.invalidate("k");  // another process invalidates while this load runs
    return std::string("loaded before the invalidation");
  });
  EXPECT_EQ(v, "loaded before the invalidation");  // the caller still gets its value
  EXPECT_EQ(cache.stats().stale_writes_rejected, 1u);
  EXPECT_FALSE(other.get("k")) << "the older load was stored after the invalidation";
}

TEST(RedisCache, OneProcessMakesOneLockAttemptPerKey) {
  auto backend = stampede::redis::backend<int>(shared_client(), unique_prefix());
  auto counting = std::make_shared<stampede_test::CountingLock>(backend.lock);
  backend.lock = counting;
  Cache<int> cache({.ttl = 30s, .wait_timeout = 60s}, backend);
  constexpr int kThreads = 8;
  std::atomic<int> loads{0};
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      EXPECT_EQ(cache.get_or_compute("k",
                                     [&] {
                                       std::this_thread::sleep_for(100ms);  // a slow DB
                                       return ++loads;
                                     }),
                1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(loads.load(), 1);
  EXPECT_EQ(counting->successful_acquires() + counting->failed_acquires(), 1);
}

TEST(RedisCache, StaleWhileRevalidateRefreshesOnceAcrossProcesses) {
  auto clock = std::make_shared<stampede::ManualClock>(std::chrono::system_clock::now());
  const std::string prefix = unique_prefix();
  CacheOptions opts{
      .mode = stampede::Mode::stale_while_revalidate, .soft_ttl = 10s, .swr_window = 60s, .clock = clock};
  Cache<int> a(opts, stampede::redis::backend<int>(shared_client(), prefix));
  Cache<int> b(opts, stampede::redis::backend<int>(shared_client(), prefix));
  std::atomic<int> loads{0};
  stampede_test::Gate both_served;
  // The refresh (load 2) cannot store before both caches have served the stale value.
  auto loader = [&loads, &both_served] {
    const int n = ++loads;
    if (n > 1) both_served.wait();
    return n;
  };
  EXPECT_EQ(a.get_or_compute("k", loader), 1);
  clock->advance(11s);
  {
    stampede_test::OpenOnExit open(both_served);
    EXPECT_EQ(a.get_or_compute("k", loader), 1);  // stale, served at once
    EXPECT_EQ(b.get_or_compute("k", loader), 1);
  }
  a.wait_idle();
  b.wait_idle();
  EXPECT_EQ(loads.load(), 2) << "more than one refresh for one soft expiry";
  EXPECT_EQ(a.stats().refreshes + b.stats().refreshes, 1u);
  EXPECT_EQ(b.get_or_compute("k", loader), 2);
}

TEST(RedisCache, WorksAcrossScriptFlush) {
  auto client = shared_client();
  Cache<int> cache({.ttl = 30s}, stampede::redis::backend<int>(client, unique_prefix()));
  EXPECT_EQ(cache.get_or_compute("k", [] { return 1; }), 1);
  client->command({"SCRIPT", "FLUSH"});
  cache.put("k", 2);
  client->command({"SCRIPT", "FLUSH"});
  EXPECT_EQ(cache.get_or_compute("k", [] { return 3; }), 2);
  cache.invalidate("k");
  client->command({"SCRIPT", "FLUSH"});
  EXPECT_EQ(cache.get_or_compute("k", [] { return 4; }), 4);
  EXPECT_EQ(cache.stats().backend_errors, 0u);
}

TEST(RedisCache, FailOpenLoadsWithoutRedisAndComesBackWhenItReturns) {
  redis_test::RedisServer server;
  auto client = Client::connect(server.url());
  Cache<int> cache({.ttl = 30s}, stampede::redis::backend<int>(client));
  Cache<int> closed({.ttl = 30s, .backend_failure = stampede::BackendFailure::fail_closed},
                    stampede::redis::backend<int>(client));
  server.kill();
  EXPECT_EQ(cache.get_or_compute("k", [] { return 1; }), 1);
  EXPECT_GE(cache.stats().backend_errors, 1u);
  EXPECT_THROW(closed.get_or_compute("k", [] { return 1; }), stampede::backend_error);
  EXPECT_THROW(cache.put("k", 5), stampede::backend_error);  // a write that did not happen is an error
  server.start();
  EXPECT_EQ(cache.get_or_compute("k", [] { return 2; }), 2);
  EXPECT_EQ(closed.get_or_compute("k", [] { return 3; }), 2) << "not stored in the restarted Redis";
}

// The ACL that docs/operations.md gives for a dedicated user is enough for everything the
// backend does: loads, waits woken by pub/sub, put, invalidate.
TEST(RedisCache, TheDocumentedAclIsEnough) {
  redis_test::RedisServer server;  // its own server: users are server-wide
  auto admin = Client::connect(server.url());
  admin->command({"ACL",      "SETUSER",       "stampede",     "on",          ">password",
                  "~shop:*",  "&shop:done:{*", "+get",         "+set",        "+del",
                  "+hgetall", "+hget",         "+hset",        "+hincrby",    "+pexpire",
                  "+pttl",    "+time",         "+publish",     "+psubscribe", "+ping",
                  "+evalsha", "+eval",         "+script|load", "+auth",       "+select"});
  const std::string url = "redis://stampede:password@127.0.0.1:" + std::to_string(server.port());
  CacheOptions opts{
      .ttl = 30s, .wait_timeout = 60s, .backend_failure = stampede::BackendFailure::fail_closed};
  Cache<std::string> a(opts, stampede::redis::backend<std::string>(Client::connect(url), "shop:"));
  Cache<std::string> b(opts, stampede::redis::backend<std::string>(Client::connect(url), "shop:"));
  stampede_test::Gate loading, finish;
  std::thread loader([&] {
    EXPECT_EQ(a.get_or_compute("k",
                               [&] {
                                 loading.open();
                                 finish.wait();
                                 return std::string("v");
                               }),
              "v");
  });
  {
    stampede_test::OpenOnExit open(finish);
    ASSERT_TRUE(loading.wait_for());
    std::thread waiter([&] {
      try {
        EXPECT_EQ(b.get_or_compute("k", [] { return std::string("b loaded"); }), "v");
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
      }
    });
    EXPECT_TRUE(stampede_test::eventually([&] { return b.stats().lock_contended >= 1; }));
    finish.open();
    waiter.join();
  }
  loader.join();
  a.put("k", "w");
  EXPECT_EQ(b.get("k").value_or("<none>"), "w");
  a.invalidate("k");
  EXPECT_FALSE(b.get("k"));
  EXPECT_EQ(a.stats().backend_errors + b.stats().backend_errors, 0u);
}

// Redis dies while one process loads and others wait: every caller returns (fail_open: the value;
// fail_closed: the value or backend_error), and the cache works again after a restart.
void stampede_with_redis_killed(stampede::BackendFailure mode) {
  redis_test::RedisServer server;
  auto client_a = Client::connect(server.url());
  auto client_b = Client::connect(server.url());
  CacheOptions opts{.ttl = 30s, .lock_ttl = 10s, .wait_timeout = 5s, .backend_failure = mode};
  Cache<int> a(opts, stampede::redis::backend<int>(client_a));
  Cache<int> b(opts, stampede::redis::backend<int>(client_b));

  stampede_test::Gate loading, killed;
  std::atomic<int> returned{0}, backend_errors{0}, other_errors{0};
  auto call = [&](Cache<int>& cache) {
    try {
      const int v = cache.get_or_compute("hot", [&] {
        loading.open();
        killed.wait();
        return 42;
      });
      if (v == 42) returned.fetch_add(1);
    } catch (const stampede::backend_error&) {
      backend_errors.fetch_add(1);
    } catch (...) {
      other_errors.fetch_add(1);
    }
  };
  std::vector<std::thread> threads;
  {
    stampede_test::OpenOnExit unblock(killed);
    for (int i = 0; i < 4; ++i) threads.emplace_back([&] { call(a); });
    loading.wait();  // some caller of `a` holds the lock and is loading
    for (int i = 0; i < 4; ++i) threads.emplace_back([&] { call(b); });
    // Let b's callers find the lock held (they then wait on pub/sub), bounded by the hang guard.
    stampede_test::eventually([&] { return b.stats().lock_contended >= 1; }, 10s);
    server.kill();
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(other_errors.load(), 0);
  EXPECT_EQ(returned.load() + backend_errors.load(), 8);
  if (mode == stampede::BackendFailure::fail_open) {
    EXPECT_EQ(returned.load(), 8);
    EXPECT_GE(a.stats().backend_errors + b.stats().backend_errors, 1u);
  }
  server.start();
  std::atomic<int> loads{0};
  EXPECT_EQ(b.get_or_compute("after", [&] { return ++loads; }), 1);
  EXPECT_EQ(a.get_or_compute("after", [&] { return ++loads; }), 1);
  EXPECT_EQ(loads.load(), 1) << "the restarted Redis is not shared again";
}

TEST(RedisCache, RedisKilledDuringAStampedeFailOpen) {
  stampede_with_redis_killed(stampede::BackendFailure::fail_open);
}
TEST(RedisCache, RedisKilledDuringAStampedeFailClosed) {
  stampede_with_redis_killed(stampede::BackendFailure::fail_closed);
}

}  // namespace
