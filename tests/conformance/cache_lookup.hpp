// tests/conformance/cache_lookup.hpp: Cache<T> lookups on every backend: a miss loads and stores,
// a hit returns the stored value without loading, put() stores, invalidate() removes, an entry
// expires after its TTL (spread by ttl_jitter), keys and string values are binary-safe, an empty key
// is rejected, and the stats and the event hook report what each call did.
//
// A backend runs this suite through stampede_conformance_sources (tests/CMakeLists.txt); its
// factory is described in cache_fixture.hpp. A new test goes here and into the
// REGISTER_TYPED_TEST_SUITE_P list at the end.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "conformance/cache_fixture.hpp"
#include "stampede/cache.hpp"
#include "stampede/clock.hpp"
#include "stampede/errors.hpp"
#include "stampede/events.hpp"
#include "stampede/json.hpp"
#include "stampede/options.hpp"
#include "support/test_support.hpp"

template <class Factory>
class CacheLookup : public CacheConformanceFixture<Factory> {};

TYPED_TEST_SUITE_P(CacheLookup);

TYPED_TEST_P(CacheLookup, BlockingEntryExpiresAfterItsTtl) {
  stampede::Cache<int> cache(this->options(), this->backend());
  int loads = 0;
  auto loader = [&] { return ++loads; };
  EXPECT_EQ(cache.get_or_compute("k", loader), 1);
  this->clock_->advance(std::chrono::seconds(29));
  EXPECT_EQ(cache.get_or_compute("k", loader), 1);
  this->clock_->advance(std::chrono::seconds(2));
  EXPECT_EQ(cache.get("k"), std::nullopt);
  EXPECT_EQ(cache.get_or_compute("k", loader), 2);
  EXPECT_EQ(loads, 2);
}

TYPED_TEST_P(CacheLookup, PutStoresAndInvalidateRemoves) {
  stampede::Cache<int> cache(this->options(), this->backend());
  cache.put("k", 5);
  EXPECT_EQ(cache.get("k"), 5);
  int loads = 0;
  EXPECT_EQ(cache.get_or_compute("k", [&] { return ++loads; }), 5);
  EXPECT_EQ(loads, 0);
  cache.put("k", 6);
  EXPECT_EQ(cache.get("k"), 6);
  cache.invalidate("k");
  EXPECT_EQ(cache.get("k"), std::nullopt);
  EXPECT_EQ(cache.get_or_compute("k", [&] { return ++loads; }), 1);
  cache.invalidate("never-stored");
  EXPECT_EQ(cache.get("never-stored"), std::nullopt);
}

TYPED_TEST_P(CacheLookup, KeysAndStringValuesAreBinarySafe) {
  stampede::Cache<std::string> cache(this->options(), this->template backend<std::string>());
  const std::string nul_key("a b\n\0c", 6);
  const std::string prefix_key("a b\n", 4);
  const std::string value("x\0y\r\n\"{}", 8);
  EXPECT_EQ(cache.get_or_compute(nul_key, [&] { return value; }), value);
  EXPECT_EQ(cache.get(prefix_key), std::nullopt) << "the key was cut at its NUL";
  EXPECT_EQ(cache.get(nul_key), value);
  cache.put(prefix_key, "other");
  EXPECT_EQ(cache.get(nul_key), value);
  EXPECT_EQ(cache.get(prefix_key), "other");
}

TYPED_TEST_P(CacheLookup, EmptyKeyIsRejected) {
  stampede::Cache<int> cache(this->options(), this->backend());
  int loads = 0;
  EXPECT_THROW((void)cache.get_or_compute("", [&] { return ++loads; }), std::invalid_argument);
  EXPECT_THROW((void)cache.get(""), std::invalid_argument);
  EXPECT_THROW(cache.put("", 1), std::invalid_argument);
  EXPECT_THROW(cache.invalidate(""), std::invalid_argument);
  EXPECT_THROW((void)cache.visit(
                   "", [&] { return ++loads; }, [](int v) { return v; }),
               std::invalid_argument);
  EXPECT_EQ(loads, 0);
}

TYPED_TEST_P(CacheLookup, VisitHandsAHitToTheReaderWithoutLoading) {
  stampede::Cache<std::string> cache(this->options(), this->template backend<std::string>());
  cache.put("k", "stored");
  int loads = 0;
  auto loader = [&] {
    ++loads;
    return std::string("loaded");
  };
  EXPECT_EQ(cache.visit("k", loader, [](const std::string& v) { return v + "!"; }), "stored!");
  EXPECT_EQ(loads, 0);
  EXPECT_EQ(cache.stats().hits, 1u);
  EXPECT_EQ(cache.stats().misses, 0u);
}

TYPED_TEST_P(CacheLookup, VisitLoadsAMissAndHandsTheLoadedValueToTheReader) {
  stampede::Cache<std::string> cache(this->options(), this->template backend<std::string>());
  int loads = 0;
  auto loader = [&] {
    ++loads;
    return std::string("loaded");
  };
  std::string seen;
  cache.visit("k", loader, [&](const std::string& v) { seen = v; });  // a reader may return nothing
  EXPECT_EQ(seen, "loaded");
  EXPECT_EQ(loads, 1);
  EXPECT_EQ(cache.get("k"), "loaded");
  EXPECT_EQ(cache.stats().misses, 1u);
}

TYPED_TEST_P(CacheLookup, VisitPassesOnWhatTheReaderThrowsAndTheEntryStays) {
  stampede::Cache<std::string> cache(this->options(), this->template backend<std::string>());
  cache.put("k", "stored");
  int loads = 0;
  auto loader = [&] {
    ++loads;
    return std::string("loaded");
  };
  auto throwing = [](const std::string& v) -> int { throw std::logic_error("reader saw " + v); };
  EXPECT_THROW((void)cache.visit("k", loader, throwing), std::logic_error);
  EXPECT_THROW((void)cache.visit("cold", loader, throwing), std::logic_error);  // after its load
  EXPECT_EQ(cache.get("k"), "stored");
  EXPECT_EQ(cache.get("cold"), "loaded");
  EXPECT_EQ(loads, 1);
}

TYPED_TEST_P(CacheLookup, TtlJitterSpreadsExpiriesWithinBounds) {
  constexpr int kKeys = 200;
  stampede::Backend<int> backend = this->backend();
  stampede::CacheOptions o = this->options();
  o.ttl = std::chrono::seconds(100);
  o.ttl_jitter = 0.5;
  stampede::Cache<int> cache(o, backend);
  stampede::CacheOptions plain = this->options();
  plain.ttl = std::chrono::seconds(100);
  stampede::Cache<int> unjittered(plain, backend);
  const auto now = this->clock_->now();
  const auto tolerance = std::chrono::milliseconds(1);  // a store may keep expiries in whole ms
  auto lowest = std::chrono::system_clock::duration::max();
  auto highest = std::chrono::system_clock::duration::min();
  for (int i = 0; i < kKeys; ++i) {
    const std::string key = "j" + std::to_string(i);
    ASSERT_EQ(cache.get_or_compute(key, [] { return 1; }), 1);
    auto e = backend.store->get(key, now);
    ASSERT_TRUE(e);
    const auto ttl = e->hard_expiry - now;
    EXPECT_GT(ttl, std::chrono::seconds(50) - tolerance) << key;
    EXPECT_LE(ttl, std::chrono::seconds(100) + tolerance) << key;
    lowest = std::min(lowest, ttl);
    highest = std::max(highest, ttl);

    const std::string plain_key = "p" + std::to_string(i);
    ASSERT_EQ(unjittered.get_or_compute(plain_key, [] { return 1; }), 1);
    auto p = backend.store->get(plain_key, now);
    ASSERT_TRUE(p);
    EXPECT_LE(p->hard_expiry - now, std::chrono::seconds(100) + tolerance);
    EXPECT_GE(p->hard_expiry - now, std::chrono::seconds(100) - tolerance)
        << "ttl_jitter = 0 moved an expiry";
  }
  // 200 draws from a 50 s range all within 10 s of each other: probability below 1e-130.
  EXPECT_GT(highest - lowest, std::chrono::seconds(10)) << "expiries were not spread";
}

TYPED_TEST_P(CacheLookup, StatsCountWhatHappened) {
  stampede::Cache<int> cache(this->options(), this->backend());
  EXPECT_EQ(cache.get_or_compute("k",
                                 [] {
                                   std::this_thread::sleep_for(std::chrono::milliseconds(2));
                                   return 1;
                                 }),
            1);                                                // miss, load, lock
  EXPECT_EQ(cache.get_or_compute("k", [] { return -1; }), 1);  // hit
  EXPECT_EQ(cache.get("k"), 1);                                // hit
  EXPECT_EQ(cache.get("absent"), std::nullopt);                // miss
  EXPECT_THROW((void)cache.get_or_compute("bad", []() -> int { throw ConformanceLoadError("x"); }),
               ConformanceLoadError);  // miss, load, failure, lock
  const stampede::Stats st = cache.stats();
  EXPECT_EQ(st.hits, 2u);
  EXPECT_EQ(st.misses, 3u);
  EXPECT_EQ(st.loads, 2u);
  EXPECT_EQ(st.load_failures, 1u);
  EXPECT_GE(st.load_time, std::chrono::milliseconds(2));
  EXPECT_EQ(st.lock_acquired, 2u);
  EXPECT_EQ(st.lock_contended, 0u);
  EXPECT_EQ(st.coalesced, 0u);
  EXPECT_EQ(st.wait_timeouts, 0u);
  EXPECT_EQ(st.stale_hits, 0u);
  EXPECT_EQ(st.stale_writes_rejected, 0u);
  EXPECT_EQ(st.backend_errors, 0u);
  EXPECT_EQ(stampede::to_json(st)["hits"], 2u);
  EXPECT_EQ(stampede::to_json(st)["load_failures"], 1u);
}

TYPED_TEST_P(CacheLookup, EventHookSeesLoadsFailuresAndTimeouts) {
  stampede::Backend<int> backend = this->backend();
  std::mutex mu;
  std::vector<std::pair<stampede::EventType, std::string>> events;
  stampede::CacheOptions o = this->impatient(stampede::OnWaitTimeout::throw_error);
  o.on_event = [&](const stampede::Event& e) {
    std::lock_guard lock(mu);
    events.emplace_back(e.type, std::string(e.key));
  };
  stampede::Cache<int> cache(o, backend);
  ASSERT_EQ(cache.get_or_compute("ok", [] { return 1; }), 1);
  EXPECT_THROW((void)cache.get_or_compute("bad", []() -> int { throw ConformanceLoadError("boom"); }),
               ConformanceLoadError);
  auto other = backend.lock->try_acquire("held", std::chrono::hours(1));
  ASSERT_TRUE(other);
  EXPECT_THROW((void)cache.get_or_compute("held", [] { return 1; }), stampede::timeout_error);
  EXPECT_TRUE(backend.lock->release("held", other->token));

  std::lock_guard lock(mu);
  auto has = [&](stampede::EventType type, const std::string& key) {
    return std::find(events.begin(), events.end(), std::make_pair(type, key)) != events.end();
  };
  EXPECT_TRUE(has(stampede::EventType::lock_acquired, "ok"));
  EXPECT_TRUE(has(stampede::EventType::load_done, "ok"));
  EXPECT_TRUE(has(stampede::EventType::load_failed, "bad"));
  EXPECT_TRUE(has(stampede::EventType::lock_timeout, "held"));
  EXPECT_FALSE(has(stampede::EventType::load_done, "held"));
}

REGISTER_TYPED_TEST_SUITE_P(CacheLookup, BlockingEntryExpiresAfterItsTtl, PutStoresAndInvalidateRemoves,
                            KeysAndStringValuesAreBinarySafe, EmptyKeyIsRejected,
                            TtlJitterSpreadsExpiriesWithinBounds, StatsCountWhatHappened,
                            EventHookSeesLoadsFailuresAndTimeouts, VisitHandsAHitToTheReaderWithoutLoading,
                            VisitLoadsAMissAndHandsTheLoadedValueToTheReader,
                            VisitPassesOnWhatTheReaderThrowsAndTheEntryStays);
