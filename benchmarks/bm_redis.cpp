// benchmarks/bm_redis.cpp: the Redis backend against a real redis-server.
//
// scripts/bench.sh starts a redis-server on a free loopback port and passes its URL:
//   stampede_bench_redis --stampede_profile=quick --stampede_redis_url=redis://127.0.0.1:PORT
// (or set STAMPEDE_REDIS_URL). Every benchmark writes under its own key prefix.
//
//   BM_Redis_Wave_clients/M/pubsub/D_ms   M Cache + Client instances in ONE process, each with its
//       own connection pool, pub/sub connection and flights (so nothing is coalesced in process:
//       they meet only in Redis, like M processes would), one caller each, miss one key together.
//       pubsub:0 wraps the lock so that subscribe() never signals: the waiters find the value only
//       by the blocking-poll fallback (poll_interval, default 100 ms jittered), like seed_lock_poll.
//       Each instance's pub/sub connection is opened before the first wave (steady state).
//   BM_Redis_HitPath_stampede / _raw_hiredis_get   a warm hit through Cache<std::string> over a
//       Client with pool_size = threads, against a plain hiredis GET with one connection per
//       thread: the same number of connections. _raw_hiredis_hgetall reads the Cache's own value hash
//       the same way, which splits the gap into the wire format's cost and the library's.
//       Per-call latency percentiles averaged over threads.
//   BM_Redis_CommandsPerCall   INFO commandstats deltas around a hit, a leader miss (no contention)
//       and a waiter miss (another instance holds the lock); counters `<case>:<command>`. Commands
//       run inside Lua scripts are counted by Redis as well, next to the EVALSHA that ran them.
#include <hiredis/hiredis.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "stampede/redis/redis.hpp"
#include "stampede/stampede.hpp"
#include "wave.hpp"

namespace stampede::bench {
namespace {

using namespace std::chrono_literals;

std::string g_url = "redis://127.0.0.1:6379";
Profile g_profile;

std::string fresh_prefix() {
  static std::atomic<int> n{0};
  return "bench:" + std::to_string(::getpid()) + ":" + std::to_string(n.fetch_add(1)) + ":";
}

/// Emulates a client without pub/sub: forwards everything to `inner` except that subscribe()
/// returns a Subscription that is never signalled, so waiters rely on the poll fallback.
class PollOnlyLock final : public TokenLock {
 public:
  explicit PollOnlyLock(std::shared_ptr<TokenLock> inner) : inner_(std::move(inner)) {}
  std::optional<LockToken> do_try_acquire(std::string_view key, std::chrono::milliseconds ttl) override {
    return inner_->try_acquire(key, ttl);
  }
  bool do_release(std::string_view key, std::string_view token) override {
    return inner_->release(key, token);
  }
  bool do_renew(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) override {
    return inner_->renew(key, token, ttl);
  }
  std::uint64_t do_bump_fence(std::string_view key) override { return inner_->bump_fence(key); }
  std::unique_ptr<Subscription> do_subscribe(std::string_view /*key*/) override {
    return std::make_unique<Silent>();
  }
  void do_notify(std::string_view key) override { inner_->notify(key); }

 private:
  struct Silent final : Subscription {
    bool wait_until(std::chrono::steady_clock::time_point deadline) override {
      std::this_thread::sleep_until(deadline);
      return false;
    }
  };
  std::shared_ptr<TokenLock> inner_;
};

/// One Cache + Client instance, as one process would have it.
struct Instance {
  std::shared_ptr<redis::Client> client;
  std::unique_ptr<Cache<std::string>> cache;
};

Instance make_instance(const std::string& prefix, bool pubsub, std::size_t pool_size = 2) {
  Instance in;
  in.client = redis::Client::connect(g_url, {.pool_size = pool_size});
  Backend<std::string> b = redis::backend<std::string, StringCodec>(in.client, prefix);
  // Open the pub/sub connection now, so that waves measure the steady state.
  { std::unique_ptr<Subscription> warm = b.lock->subscribe("warm-up"); }
  if (!pubsub) b.lock = std::make_shared<PollOnlyLock>(b.lock);
  in.cache = std::make_unique<Cache<std::string>>(CacheOptions{}, std::move(b));
  return in;
}

// ---- M instances miss one key together ------------------------------------------------------------

class RedisClientsStrategy {
 public:
  static constexpr bool kWaits = true;
  RedisClientsStrategy(int m, bool pubsub) : prefix_(fresh_prefix()) {
    for (int i = 0; i < m; ++i) instances_.push_back(make_instance(prefix_, pubsub));
  }
  std::string prepare_wave(int wave) { return "wave:" + std::to_string(wave); }
  std::string get(int caller, const std::string& key, SimulatedDb& db) {
    return instances_[static_cast<std::size_t>(caller)].cache->get_or_compute(key,
                                                                              [&] { return db.load(key); });
  }
  void after_wave() {}
  Stats stats() const {
    Stats sum;
    for (const Instance& in : instances_) {
      Stats s = in.cache->stats();
      sum.wait_timeouts += s.wait_timeouts;
      sum.fallback_computes += s.fallback_computes;
      sum.backend_errors += s.backend_errors;
      sum.lock_contended += s.lock_contended;
    }
    return sum;
  }

 private:
  std::string prefix_;
  std::vector<Instance> instances_;
};

void BM_Redis_Wave_clients(benchmark::State& state) {
  const auto m = static_cast<int>(state.range(0));
  const bool pubsub = state.range(1) != 0;
  SimulatedDb db{std::chrono::milliseconds(state.range(2))};
  try {
    RedisClientsStrategy strategy(m, pubsub);
    run_waves(state, m, db, strategy);
    const Stats s = strategy.stats();
    state.counters["wait_timeouts"] = static_cast<double>(s.wait_timeouts);
    state.counters["fallback_computes"] = static_cast<double>(s.fallback_computes);
    state.counters["backend_errors"] = static_cast<double>(s.backend_errors);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
  state.counters["M"] = m;
}

std::string g_setup_error;  // set by a benchmark's Setup, reported by the benchmark

// ---- near cache: hit path and invalidation latency ------------------------------------------------

// BM_Near_HitPath/spread:S   a warm hit through Cache<std::string> over the Redis backend with a
//     near cache: spread:0 one hot key, spread:1 kSpreadKeys keys picked at random per call.
// BM_Near_HitPath_embedded/spread:S   the same calls over the embedded backend (memory_backend()),
//     in the same run: the ratio near/embedded is the near cache's overhead.
// BM_Near_InvalidationLatency   instance B puts a new value; time until instance A (near cache on,
//     spinning on get()) sees it: Redis's invalidation message, A's drop and A's re-read. Counters
//     p50_us/p99_us over the iterations.
constexpr std::size_t kSpreadKeys = 1024;

struct NearWorld {
  std::shared_ptr<redis::Client> client;
  std::unique_ptr<Cache<std::string>> cache;
  std::vector<std::string> keys;
};
std::unique_ptr<NearWorld> g_near;

void setup_near_world(bool embedded) {
  g_setup_error.clear();
  try {
    g_near = std::make_unique<NearWorld>();
    for (std::size_t i = 0; i < kSpreadKeys; ++i) g_near->keys.push_back("key:" + std::to_string(i));
    if (embedded) {
      g_near->cache = std::make_unique<Cache<std::string>>(CacheOptions{});
    } else {
      g_near->client = redis::Client::connect(g_url);
      redis::BackendOptions o{.prefix = fresh_prefix(), .near_cache = {.enabled = true}};
      auto b = redis::backend<std::string, StringCodec>(g_near->client, o);
      auto* near =
          std::dynamic_pointer_cast<redis::RedisStore<std::string, StringCodec>>(b.store)->near_cache();
      if (!near->wait_for_tracking(std::chrono::steady_clock::now() + 10s)) {
        throw std::runtime_error("near cache tracking not established");
      }
      g_near->cache = std::make_unique<Cache<std::string>>(CacheOptions{}, std::move(b));
    }
    for (const std::string& k : g_near->keys) {
      g_near->cache->put(k, "value-v1-0123456789abcdef");
      (void)g_near->cache->get(k);  // the first read after a write goes to Redis and is kept
    }
  } catch (const std::exception& e) {
    g_setup_error = e.what();
  }
}
void setup_near(const benchmark::State&) { setup_near_world(false); }
void setup_embedded(const benchmark::State&) { setup_near_world(true); }
void teardown_near(const benchmark::State&) { g_near.reset(); }

void near_hit(benchmark::State& state) {
  if (!g_setup_error.empty()) {
    state.SkipWithError(g_setup_error.c_str());
    return;
  }
  Cache<std::string>& cache = *g_near->cache;
  const bool hot = state.range(0) == 0;
  std::uint64_t x = 0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(state.thread_index() + 1);
  const Stats before = cache.stats();
  for (auto _ : state) {
    std::string_view key = g_near->keys[0];
    if (!hot) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      key = g_near->keys[x % kSpreadKeys];
    }
    std::string v = cache.get_or_compute(key, [] { return std::string("loaded"); });
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    const Stats after = cache.stats();
    state.counters["near_misses"] = static_cast<double>(after.near_misses - before.near_misses);
    state.counters["misses"] = static_cast<double>(after.misses - before.misses);
  }
}
void BM_Near_HitPath(benchmark::State& state) { near_hit(state); }
void BM_Near_HitPath_embedded(benchmark::State& state) { near_hit(state); }

void BM_Near_InvalidationLatency(benchmark::State& state) {
  try {
    const std::string prefix = fresh_prefix();
    redis::BackendOptions o{.prefix = prefix, .near_cache = {.enabled = true}};
    auto client_a = redis::Client::connect(g_url);
    auto ba = redis::backend<std::string, StringCodec>(client_a, o);
    auto* near =
        std::dynamic_pointer_cast<redis::RedisStore<std::string, StringCodec>>(ba.store)->near_cache();
    if (!near->wait_for_tracking(std::chrono::steady_clock::now() + 10s)) {
      throw std::runtime_error("near cache tracking not established");
    }
    Cache<std::string> a(CacheOptions{}, std::move(ba));
    Cache<std::string> b(CacheOptions{},
                         redis::backend<std::string, StringCodec>(redis::Client::connect(g_url), prefix));
    std::vector<double> us;
    int i = 0;
    b.put("k", "v" + std::to_string(i));
    while (a.get("k") != "v" + std::to_string(i)) {
    }
    for (auto _ : state) {
      const std::string next = "v" + std::to_string(++i);
      (void)a.get("k");  // a near hit of the previous value
      const std::int64_t t0 = now_ns();
      b.put("k", next);
      const auto give_up = std::chrono::steady_clock::now() + 10s;
      while (a.get("k") != next) {
        if (std::chrono::steady_clock::now() > give_up)
          throw std::runtime_error("invalidation never arrived");
      }
      const double took = static_cast<double>(now_ns() - t0) * 1e-3;
      us.push_back(took);
      state.SetIterationTime(took * 1e-6);
    }
    state.counters["p50_us"] = quantile(us, 0.5);
    state.counters["p99_us"] = quantile(us, 0.99);
    state.counters["near_hits"] = static_cast<double>(a.stats().near_hits);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// ---- hit path: Cache over Redis vs raw hiredis GET -------------------------------------------------

const std::string kValue = "value-v1-0123456789abcdef";  // the same bytes in both benchmarks

struct HitWorld {
  Instance instance;
  std::string prefix;
  int threads = 0;
};
std::unique_ptr<HitWorld> g_hit;

void setup_hit(const benchmark::State& state) {
  g_setup_error.clear();
  try {
    g_hit = std::make_unique<HitWorld>();
    g_hit->prefix = fresh_prefix();
    g_hit->threads = state.threads();
    g_hit->instance = make_instance(g_hit->prefix, true, static_cast<std::size_t>(state.threads()));
    g_hit->instance.cache->put("hot", kValue);
    g_hit->instance.client->command({"SET", g_hit->prefix + "raw:hot", kValue});
  } catch (const std::exception& e) {
    g_setup_error = e.what();
  }
}
void teardown_hit(const benchmark::State&) { g_hit.reset(); }

void report_thread_latency(benchmark::State& state, std::vector<double>& us) {
  if (us.empty()) return;
  state.counters["lat_p50_us"] = benchmark::Counter(quantile(us, 0.5), benchmark::Counter::kAvgThreads);
  state.counters["lat_p99_us"] = benchmark::Counter(quantile(us, 0.99), benchmark::Counter::kAvgThreads);
}

void BM_Redis_HitPath_stampede(benchmark::State& state) {
  if (!g_setup_error.empty()) {
    state.SkipWithError(g_setup_error.c_str());
    return;
  }
  Cache<std::string>& cache = *g_hit->instance.cache;
  std::vector<double> us;
  us.reserve(1 << 16);
  for (auto _ : state) {
    const std::int64_t t0 = now_ns();
    std::string v = cache.get_or_compute("hot", [] { return std::string("loaded"); });
    us.push_back(static_cast<double>(now_ns() - t0) * 1e-3);
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
  report_thread_latency(state, us);
  if (state.thread_index() == 0) {
    state.counters["connections"] = static_cast<double>(g_hit->instance.client->open_connections());
  }
}

/// One hiredis connection per thread sending `argv` (a GET of the plain copy, or an HGETALL of the
/// Cache's own value hash); every string of the reply is copied out, as a client would.
void raw_hit(benchmark::State& state, bool hgetall) {
  if (!g_setup_error.empty()) {
    state.SkipWithError(g_setup_error.c_str());
    return;
  }
  const redis::Endpoint ep = redis::parse_url(g_url);
  redisContext* c = redisConnect(ep.host.c_str(), ep.port);
  if (c == nullptr || c->err != 0) {
    state.SkipWithError("redisConnect failed");
    if (c != nullptr) redisFree(c);
    return;
  }
  const std::string key =
      hgetall ? g_hit->prefix + "{hot}" : g_hit->prefix + "raw:hot";  // the value key (wire-format.md)
  const char* fmt = hgetall ? "HGETALL %b" : "GET %b";
  const int expected = hgetall ? REDIS_REPLY_ARRAY : REDIS_REPLY_STRING;
  std::vector<double> us;
  us.reserve(1 << 16);
  std::vector<std::string> fields;
  for (auto _ : state) {
    const std::int64_t t0 = now_ns();
    auto* r = static_cast<redisReply*>(redisCommand(c, fmt, key.data(), key.size()));
    if (r == nullptr || r->type != expected || (hgetall && r->elements == 0)) {
      if (r != nullptr) freeReplyObject(r);
      state.SkipWithError("raw read failed");
      break;
    }
    fields.clear();
    if (hgetall) {
      for (std::size_t i = 0; i < r->elements; ++i)
        fields.emplace_back(r->element[i]->str, r->element[i]->len);
    } else {
      fields.emplace_back(r->str, r->len);
    }
    freeReplyObject(r);
    us.push_back(static_cast<double>(now_ns() - t0) * 1e-3);
    benchmark::DoNotOptimize(fields);
  }
  redisFree(c);
  state.SetItemsProcessed(state.iterations());
  report_thread_latency(state, us);
}

void BM_Redis_HitPath_raw_hiredis_get(benchmark::State& state) { raw_hit(state, false); }
void BM_Redis_HitPath_raw_hiredis_hgetall(benchmark::State& state) { raw_hit(state, true); }

// ---- Redis commands per call (INFO commandstats deltas) -------------------------------------------

using CommandCounts = std::map<std::string, long long>;

CommandCounts commandstats(redis::Client& admin) {
  CommandCounts out;
  std::istringstream in(admin.command({"INFO", "commandstats"}).str);
  std::string line;
  while (std::getline(in, line)) {
    // cmdstat_get:calls=5,usec=12,usec_per_call=2.40,rejected_calls=0,failed_calls=0
    if (line.rfind("cmdstat_", 0) != 0) continue;
    const auto colon = line.find(':');
    const auto calls = line.find("calls=", colon);
    if (colon == std::string::npos || calls == std::string::npos) continue;
    out[line.substr(8, colon - 8)] = std::atoll(line.c_str() + calls + 6);
  }
  return out;
}

/// after - before, without the INFO calls that took the snapshots.
CommandCounts delta(const CommandCounts& before, const CommandCounts& after) {
  CommandCounts d;
  for (const auto& [cmd, n] : after) {
    if (cmd == "info") continue;
    auto it = before.find(cmd);
    const long long diff = n - (it == before.end() ? 0 : it->second);
    if (diff != 0) d[cmd] = diff;
  }
  return d;
}

void report_commands(benchmark::State& state, const std::string& name, const CommandCounts& d, double per) {
  double total = 0;
  for (const auto& [cmd, n] : d) {
    state.counters[name + ":" + cmd] = static_cast<double>(n) / per;
    total += static_cast<double>(n);
  }
  state.counters["cmds_" + name] = total / per;
}

void BM_Redis_CommandsPerCall(benchmark::State& state) {
  try {
    const std::string prefix = fresh_prefix();
    auto admin = redis::Client::connect(g_url, {.pool_size = 1});
    Instance a = make_instance(prefix, true);
    Instance b = make_instance(prefix, true);
    auto instant = [] { return std::string("loaded"); };
    int round = 0;
    for (auto _ : state) {
      const std::string r = std::to_string(round++);
      // hit: 100 warm hits
      constexpr int kHits = 100;
      a.cache->put("hot:" + r, kValue);
      CommandCounts before = commandstats(*admin);
      for (int i = 0; i < kHits; ++i) benchmark::DoNotOptimize(a.cache->get_or_compute("hot:" + r, instant));
      report_commands(state, "hit", delta(before, commandstats(*admin)), kHits);

      // leader miss: nobody else wants the key
      before = commandstats(*admin);
      benchmark::DoNotOptimize(a.cache->get_or_compute("lead:" + r, instant));
      const CommandCounts leader = delta(before, commandstats(*admin));
      report_commands(state, "leader_miss", leader, 1);

      // waiter miss: `a` loads for 50 ms; `b` misses meanwhile and waits for a's value
      std::mutex mu;
      std::condition_variable cv;
      bool loading = false;
      const std::string key = "wait:" + r;
      before = commandstats(*admin);
      std::thread leader_thread([&] {
        benchmark::DoNotOptimize(a.cache->get_or_compute(key, [&] {
          {
            std::lock_guard l(mu);
            loading = true;
          }
          cv.notify_all();
          std::this_thread::sleep_for(50ms);
          return std::string("loaded");
        }));
      });
      {
        std::unique_lock l(mu);
        cv.wait(l, [&] { return loading; });
      }
      benchmark::DoNotOptimize(b.cache->get_or_compute(key, instant));
      leader_thread.join();
      CommandCounts both = delta(before, commandstats(*admin));
      for (const auto& [cmd, n] : leader) both[cmd] -= n;
      std::erase_if(both, [](const auto& kv) { return kv.second == 0; });
      report_commands(state, "waiter_miss", both, 1);
      state.counters["waiter_coalesced"] = static_cast<double>(b.cache->stats().coalesced);
      state.counters["waiter_fallback_computes"] = static_cast<double>(b.cache->stats().fallback_computes);
    }
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

}  // namespace
}  // namespace stampede::bench

int main(int argc, char** argv) {
  namespace sb = stampede::bench;
  try {
    sb::g_profile = sb::parse_profile(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stampede_bench_redis: %s\n", e.what());
    return 2;
  }
  if (const char* env = std::getenv("STAMPEDE_REDIS_URL")) sb::g_url = env;
  constexpr std::string_view flag = "--stampede_redis_url=";
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.substr(0, flag.size()) == flag) {
      sb::g_url = std::string(arg.substr(flag.size()));
    } else {
      argv[out++] = argv[i];
    }
  }
  argc = out;
  benchmark::AddCustomContext("redis_url", sb::g_url);
  const sb::Profile& p = sb::g_profile;

  for (int m : {2, 8, 32}) {
    for (int pubsub : {1, 0}) {
      benchmark::RegisterBenchmark("BM_Redis_Wave_clients", sb::BM_Redis_Wave_clients)
          ->Args({m, pubsub, 50})
          ->ArgNames({"M", "pubsub", "D_ms"})
          ->Iterations(p.waves)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
  using Fn = void (*)(benchmark::State&);
  const std::pair<const char*, Fn> hit_paths[] = {
      {"BM_Redis_HitPath_stampede", sb::BM_Redis_HitPath_stampede},
      {"BM_Redis_HitPath_raw_hiredis_get", sb::BM_Redis_HitPath_raw_hiredis_get},
      {"BM_Redis_HitPath_raw_hiredis_hgetall", sb::BM_Redis_HitPath_raw_hiredis_hgetall}};
  for (const auto& [name, fn] : hit_paths) {
    auto* b = benchmark::RegisterBenchmark(name, fn)
                  ->Setup(sb::setup_hit)
                  ->Teardown(sb::teardown_hit)
                  ->Threads(1)
                  ->Threads(2)
                  ->Threads(4)
                  ->UseRealTime()
                  ->Unit(benchmark::kMicrosecond);
    if (p.min_time > 0) {
      b->MinTime(p.min_time);
    } else {
      b->Iterations(100);
    }
    sb::repeat(b, p);
  }
  const std::tuple<const char*, Fn, void (*)(const benchmark::State&)> near_paths[] = {
      {"BM_Near_HitPath", sb::BM_Near_HitPath, sb::setup_near},
      {"BM_Near_HitPath_embedded", sb::BM_Near_HitPath_embedded, sb::setup_embedded}};
  for (const auto& [name, fn, setup] : near_paths) {
    for (int spread : {0, 1}) {
      auto* b = benchmark::RegisterBenchmark(name, fn)
                    ->Arg(spread)
                    ->ArgName("spread")
                    ->Setup(setup)
                    ->Teardown(sb::teardown_near)
                    ->Threads(1)
                    ->Threads(2)
                    ->UseRealTime();
      if (p.min_time > 0) {
        b->MinTime(p.min_time);
      } else {
        b->Iterations(1000);
      }
      sb::repeat(b, p);
    }
  }
  benchmark::RegisterBenchmark("BM_Near_InvalidationLatency", sb::BM_Near_InvalidationLatency)
      ->Iterations(p.min_time > 0 ? 500 : 20)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("BM_Redis_CommandsPerCall", sb::BM_Redis_CommandsPerCall)
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
