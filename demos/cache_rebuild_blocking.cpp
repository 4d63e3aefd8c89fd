// cache_rebuild_blocking: N workers miss one cold key at the same moment; the database sees one query.
//
// The workers are released together by a std::latch and all call Cache::get_or_compute on the same
// key. In one process they share one flight; across processes (--redis) the flight leaders race for
// the key's token lock and only the winner queries the simulated database, the others wait for the
// value. Each worker prints where its value came from:
//   db    - this worker ran the query (the load leader, or a fallback after a wait timeout)
//   wait  - the key was missing; the worker waited for someone else's load
//   cache - the value was already cached when the worker looked
//   error - the worker got an exception (e.g. --on-timeout error after waiting --timeout-ms)
//   stale - the load outran --soft-timeout-ms: the worker got the old value (the load finishes in
//           the background and stores the new one)
//
// With --soft-timeout-ms a warm-up loads the key once and lets it expire (on the cache's clock), so
// the store still holds an old value for the soft timeout to serve. With --hard-timeout-ms alone
// there is nothing old: the workers get timeout_error. Either way the demo then waits for the
// background load to store its value before it reports.
//
// With --reads N each worker then reads the key N more times (timed one by one): with --redis
// --near-cache those reads are near hits, without a Redis round trip.
//
//   cache_rebuild_blocking --workers 64 --db-ms 200 --json    # {"db_hits":1,"served":64,...}
//   cache_rebuild_blocking --workers 64 --db-ms 500 --soft-timeout-ms 50 --json   # "stale_served":64
#include <CLI/CLI.hpp>
#include <cstdint>
#include <iostream>
#include <latch>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stampede/json.hpp>
#include <stampede/stampede.hpp>
#include <string>
#include <thread>
#include <vector>

#include "backend.hpp"
#include "cli.hpp"
#include "common.hpp"
#include "fake_db.hpp"
#include "probe.hpp"

namespace {

struct Settings {
  std::string key = "item:1";
  double cache_ttl_s = 30;
  std::int64_t lock_ttl_ms = 5000;
  std::int64_t timeout_ms = 1000;
  std::int64_t retry_ms = 100;
  std::int64_t db_ms = 500;
  std::int64_t workers = 8;
  std::int64_t reads = 0;
  std::string on_timeout = "compute";
  std::int64_t soft_timeout_ms = 0;
  std::int64_t hard_timeout_ms = 0;
  bool json = false;
  demo::BackendChoice backend;
};

struct Outcome {
  std::string source;  // db | wait | cache | stale | error
  double latency_ms = 0;
  std::int64_t version = 0;
  std::string error;
  std::vector<double> read_ns;  // --reads: each later read's time
};

stampede::OnWaitTimeout parse_policy(const std::string& name) {
  if (name == "error") return stampede::OnWaitTimeout::throw_error;
  if (name == "stale") return stampede::OnWaitTimeout::serve_stale;
  return stampede::OnWaitTimeout::compute;
}

int run_demo(const Settings& s) {
  using std::chrono::milliseconds;
  demo::FakeDb db{milliseconds(s.db_ms)};
  const bool timeouts = s.soft_timeout_ms > 0 || s.hard_timeout_ms > 0;
  // The cache's clock: the wall clock, moved forward by the warm-up to expire the old value.
  auto clock = std::make_shared<stampede::ManualClock>(std::chrono::system_clock::now());
  stampede::CacheOptions options;
  options.ttl = demo::seconds_to_ms(s.cache_ttl_s);
  options.lock_ttl = milliseconds(s.lock_ttl_ms);
  options.wait_timeout = milliseconds(s.timeout_ms);
  options.poll_interval = milliseconds(s.retry_ms);
  options.on_wait_timeout = parse_policy(s.on_timeout);
  options.loader_soft_timeout = milliseconds(s.soft_timeout_ms);
  options.loader_hard_timeout = milliseconds(s.hard_timeout_ms);
  if (timeouts) options.clock = clock;
  stampede::Cache<demo::Item> cache(options, demo::probe(s.backend.backend<demo::Item>()));
  // Captures by value what a background load may use after a worker returned (db outlives cache).
  auto load = [&db, key = s.key] {
    demo::Probe::note_load();
    return db.load(key);
  };
  std::int64_t warm_version = -1;
  if (s.soft_timeout_ms > 0) {  // leave an old value behind: loaded (without the timeouts), then expired
    const demo::Item old = db.load(s.key);
    cache.put(s.key, old);
    warm_version = old.version;
    clock->advance(options.ttl + milliseconds(1));
  }
  const std::int64_t warm_db_hits = db.hits();

  const auto workers = static_cast<std::size_t>(s.workers);
  std::vector<Outcome> outcomes(workers);
  std::latch start(static_cast<std::ptrdiff_t>(workers));
  {
    std::vector<std::jthread> threads;
    threads.reserve(workers);
    for (std::size_t w = 0; w < workers; ++w) {
      threads.emplace_back([&, w] {
        Outcome& out = outcomes[w];
        start.arrive_and_wait();
        const auto t0 = std::chrono::steady_clock::now();
        demo::Probe::begin();
        try {
          demo::Item item = cache.get_or_compute(s.key, load);
          const demo::Found found = demo::Probe::first();
          out.source = item.version == warm_version                                   ? "stale"
                       : demo::Probe::loaded_here()                                   ? "db"
                       : (found == demo::Found::fresh || found == demo::Found::stale) ? "cache"
                                                                                      : "wait";
          out.version = item.version;
        } catch (const std::exception& e) {
          out.source = "error";
          out.error = e.what();
        }
        out.latency_ms = demo::to_ms(std::chrono::steady_clock::now() - t0);
        out.read_ns.reserve(static_cast<std::size_t>(s.reads));
        for (std::int64_t r = 0; r < s.reads; ++r) {
          const auto r0 = std::chrono::steady_clock::now();
          try {
            demo::Item item = cache.get_or_compute(s.key, [&] { return db.load(s.key); });
            (void)item;
          } catch (const std::exception&) {
            // counted by the cache's stats; a read here only measures
          }
          out.read_ns.push_back(static_cast<double>(
              std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - r0)
                  .count()));
        }
      });
    }
  }                // joins
  if (timeouts) {  // a load that outran its timeout stores its value in the background: wait for it
    const auto until = std::chrono::steady_clock::now() + milliseconds(s.db_ms) + std::chrono::seconds(10);
    for (;;) {
      std::optional<demo::Item> now = cache.get(s.key);
      if ((now && now->version != warm_version) || std::chrono::steady_clock::now() >= until) break;
      std::this_thread::sleep_for(milliseconds(5));
    }
  }

  std::map<std::string, std::int64_t> sources{
      {"db", 0}, {"wait", 0}, {"cache", 0}, {"stale", 0}, {"error", 0}};
  std::vector<double> latencies;
  std::vector<double> read_ns;
  std::int64_t served = 0;
  for (const Outcome& o : outcomes) {
    read_ns.insert(read_ns.end(), o.read_ns.begin(), o.read_ns.end());
    ++sources[o.source];
    latencies.push_back(o.latency_ms);
    if (o.source != "error") ++served;
  }
  const stampede::Stats stats = cache.stats();
  const double p50 = demo::round2(demo::quantile(latencies, 0.50));
  const double p99 = demo::round2(demo::quantile(latencies, 0.99));
  const double max = demo::round2(demo::quantile(latencies, 1.0));
  const std::int64_t errors = sources["error"];

  if (s.json) {
    nlohmann::ordered_json j;
    j["demo"] = "cache_rebuild_blocking";
    j["backend"] = s.backend.name();
    j["key"] = s.key;
    j["workers"] = s.workers;
    j["db_hits"] = db.hits() - warm_db_hits;
    if (timeouts) j["warmup_db_hits"] = warm_db_hits;
    j["served"] = served;
    j["errors"] = errors;
    j["wait_timeouts"] = stats.wait_timeouts;
    j["soft_timeouts"] = stats.soft_timeouts;
    j["hard_timeouts"] = stats.hard_timeouts;
    j["stale_served"] = stats.stale_served;
    j["stored_version"] = cache.get(s.key) ? cache.get(s.key)->version : 0;
    j["latency_ms"] = {{"p50", p50}, {"p99", p99}, {"max", max}};
    j["reads"] = static_cast<std::int64_t>(read_ns.size());
    j["near_hits"] = stats.near_hits;
    j["read_ns"] = {{"p50", demo::quantile(read_ns, 0.50)}, {"p99", demo::quantile(read_ns, 0.99)}};
    j["sources"] = {{"db", sources["db"]},
                    {"wait", sources["wait"]},
                    {"cache", sources["cache"]},
                    {"stale", sources["stale"]},
                    {"error", errors}};
    j["settings"] = {{"db_ms", s.db_ms},
                     {"cache_ttl_s", s.cache_ttl_s},
                     {"lock_ttl_ms", s.lock_ttl_ms},
                     {"timeout_ms", s.timeout_ms},
                     {"retry_ms", s.retry_ms},
                     {"on_timeout", s.on_timeout},
                     {"soft_timeout_ms", s.soft_timeout_ms},
                     {"hard_timeout_ms", s.hard_timeout_ms}};
    j["stats"] = nlohmann::ordered_json::parse(stampede::to_json(stats).dump());
    std::cout << j.dump() << '\n';
    return 0;
  }

  std::cout << "cache_rebuild_blocking: backend=" << s.backend.name() << " key=" << s.key
            << " workers=" << s.workers << " db_ms=" << s.db_ms << " timeout_ms=" << s.timeout_ms
            << " on_timeout=" << s.on_timeout << '\n';
  for (std::size_t w = 0; w < workers; ++w) {
    const Outcome& o = outcomes[w];
    std::cout << "worker=" << w << " source=" << o.source << " latency_ms=" << demo::round2(o.latency_ms);
    if (o.source == "error") {
      std::cout << " error=\"" << o.error << '"';
    } else {
      std::cout << " version=" << o.version;
    }
    std::cout << '\n';
  }
  std::cout << "summary: workers=" << s.workers << " db_hits=" << db.hits() - warm_db_hits
            << " served=" << served << " errors=" << errors << " wait_timeouts=" << stats.wait_timeouts
            << " soft_timeouts=" << stats.soft_timeouts << " hard_timeouts=" << stats.hard_timeouts
            << " stale_served=" << stats.stale_served << " (db=" << sources["db"]
            << " wait=" << sources["wait"] << " cache=" << sources["cache"] << " stale=" << sources["stale"]
            << ")\n";
  std::cout << "latency_ms: p50=" << p50 << " p99=" << p99 << " max=" << max << '\n';
  if (!read_ns.empty()) {
    std::cout << "reads: " << read_ns.size() << " near_hits=" << stats.near_hits
              << " read_ns: p50=" << demo::quantile(read_ns, 0.50) << " p99=" << demo::quantile(read_ns, 0.99)
              << '\n';
  }
  if (timeouts && sources["stale"] > 0) {
    std::cout << "result: the load outran --soft-timeout-ms: " << sources["stale"]
              << " request(s) got the old value at once; the load stored version "
              << (cache.get(s.key) ? cache.get(s.key)->version : 0) << " in the background\n";
  } else if (db.hits() - warm_db_hits == 1 && served == s.workers) {
    std::cout << "result: " << s.workers
              << " concurrent requests, 1 database query: the stampede was absorbed\n";
  } else if (db.hits() == 0 && served == s.workers) {
    std::cout << "result: every request was a cache hit (another process had loaded the key)\n";
  } else {
    std::cout << "result: " << db.hits() << " database quer" << (db.hits() == 1 ? "y" : "ies") << " for "
              << s.workers << " requests; " << stats.wait_timeouts
              << " worker(s) hit --timeout-ms and followed --on-timeout " << s.on_timeout << '\n';
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  const std::unique_ptr<CLI::App> owner = demo::make_app(
      "Releases --workers callers at once on one cold key of a stampede::Cache (blocking mode)\n"
      "in front of a simulated database, and shows that the database is queried once.",
      "cache_rebuild_blocking");
  CLI::App& app = *owner;
  app.add_option("--key", s.key, "cache key")->check(demo::non_empty);
  app.add_option("--cache-ttl", s.cache_ttl_s, "how long a loaded value lives, in seconds")
      ->check(demo::number)
      ->check(CLI::Range(0.001, 86400.0 * 365));
  app.add_option("--lock-ttl-ms", s.lock_ttl_ms, "token lock lease while loading")
      ->check(demo::integer)
      ->check(CLI::Range(1, 86'400'000));
  app.add_option("--timeout-ms", s.timeout_ms, "how long a worker waits for another's load")
      ->check(demo::integer)
      ->check(CLI::Range(1, 86'400'000));
  app.add_option("--retry-ms", s.retry_ms, "blocking-poll period while waiting")
      ->check(demo::integer)
      ->check(CLI::Range(1, 86'400'000));
  app.add_option("--db-ms", s.db_ms, "simulated database query time")
      ->check(demo::integer)
      ->check(CLI::Range(0, 3'600'000));
  app.add_option("--workers", s.workers, "workers released together on the key")
      ->check(demo::integer)
      ->check(CLI::Range(1, 10'000));
  app.add_option("--reads", s.reads, "after the stampede, each worker reads the key this many more times")
      ->check(demo::integer)
      ->check(CLI::Range(0, 10'000'000));
  app.add_option("--on-timeout", s.on_timeout,
                 "after --timeout-ms: query the DB anyway, fail, or serve a stale value")
      ->check(CLI::IsMember({"compute", "error", "stale"}));
  app.add_option(
         "--soft-timeout-ms", s.soft_timeout_ms,
         "loader soft timeout: serve the old value (a warm-up leaves one) when the load is slower; 0 = off")
      ->check(demo::integer)
      ->check(CLI::Range(0, 86'400'000));
  app.add_option("--hard-timeout-ms", s.hard_timeout_ms,
                 "loader hard timeout: fail with timeout_error when nothing old is left; 0 = off")
      ->check(demo::integer)
      ->check(CLI::Range(0, 86'400'000));
  app.add_flag("--json", s.json, "print only one JSON object on stdout");
  s.backend.add_flags(app);
  return demo::run(app, argc, argv, [&] { return run_demo(s); });
}
