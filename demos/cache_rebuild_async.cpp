// cache_rebuild_async: N coroutines on a few threads miss one cold key at once; the database sees one
// query, and the callers that wait for it hold no thread.
//
// --callers coroutines are spawned (asio::co_spawn) on one asio::io_context before it runs; then
// --threads threads run it. Each coroutine awaits stampede::asio::async_get_or_compute (with
// asio::use_awaitable) on the same key. One of them leads the key's flight and its synchronous loader
// (the simulated database, --db-ms) runs on one of the Cache's own blocking threads; the others are
// attached to the flight and resumed when it publishes. Across processes (--redis) the flight
// leaders race for the key's token lock and only the winner queries the database.
//
// While the callers wait, the main thread samples the process's thread count (/proc/self/status):
// the peak stays at the io threads plus the library's fixed threads (CacheOptions::
// background_load_threads, a lease renewer, the Redis client's), whatever --callers is. Per caller
// the demo measures
//   latency - from the coroutine's start to its resumption with the value;
//   wake    - from the end of the load (the moment the loader returned, recorded by the loader) to
//             the caller's resumption, for the callers that did not run the loader themselves. Only
//             a load of this process counts: with --redis, a process whose value was loaded by
//             another process reports no wake times ("wake_samples":0).
//
//   cache_rebuild_async --callers 10000 --threads 2 --db-ms 200 --json
//       # {"db_hits":1,"served":10000,"errors":0,"os_threads":8,...}
#include <CLI/CLI.hpp>
#include <algorithm>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/use_awaitable.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stampede/asio.hpp>
#include <stampede/json.hpp>
#include <stampede/stampede.hpp>
#include <string>
#include <thread>
#include <vector>

#include "backend.hpp"
#include "cli.hpp"
#include "common.hpp"
#include "fake_db.hpp"

namespace {

using steady = std::chrono::steady_clock;

struct Settings {
  std::string key = "item:1";
  std::int64_t callers = 10'000;
  std::int64_t threads = 2;
  std::int64_t db_ms = 200;
  std::int64_t timeout_ms = 1000;
  bool json = false;
  demo::BackendChoice backend;
};

// What one caller saw. Written by its coroutine (and `ran_loader` by its loader, on a blocking thread
// of the Cache); read by the main thread once the io threads have been joined.
struct Caller {
  steady::time_point started{};
  steady::time_point resumed{};
  std::int64_t load_end_ns = 0;  // the end of this process's last load, as seen at resumption (0: none)
  std::atomic<bool> ran_loader{false};
  bool served = false;
  std::int64_t version = 0;
  std::string error;
};

// What the coroutines share; owned by run_demo(), which outlives them.
struct Shared {
  stampede::Cache<demo::Item>& cache;
  demo::FakeDb& db;
  const std::string& key;
  std::vector<Caller>& callers;
  std::atomic<std::int64_t>& last_load_end_ns;  // steady ns, written by the loader as it returns
  std::atomic<std::int64_t>& finished;          // callers resumed (with a value or an error)
};

std::int64_t ns_since_epoch(steady::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// @return the process's thread count ("Threads:" in /proc/self/status); -1 if it cannot be read.
int os_threads() {
  std::ifstream in("/proc/self/status");
  std::string word;
  while (in >> word) {
    if (word == "Threads:") {
      int n = -1;
      in >> n;
      return n;
    }
  }
  return -1;
}

// One caller: awaits the value of the key, and records when it started and when it was resumed.
asio::awaitable<void> call(Shared& sh, std::size_t index) {
  Caller& me = sh.callers[index];
  // Runs on a blocking thread of the Cache if this caller leads the key's flight.
  auto load = [&sh, &me] {
    demo::Item item = sh.db.load(sh.key);
    me.ran_loader.store(true, std::memory_order_relaxed);
    sh.last_load_end_ns.store(ns_since_epoch(steady::now()), std::memory_order_release);
    return item;
  };
  me.started = steady::now();
  try {
    const demo::Item item =
        co_await stampede::asio::async_get_or_compute(sh.cache, sh.key, load, asio::use_awaitable);
    me.resumed = steady::now();
    me.served = true;
    me.version = item.version;
  } catch (const std::exception& e) {
    me.resumed = steady::now();
    me.error = e.what();
  }
  me.load_end_ns = sh.last_load_end_ns.load(std::memory_order_acquire);
  sh.finished.fetch_add(1, std::memory_order_acq_rel);
}

int run_demo(const Settings& s) {
  using std::chrono::milliseconds;
  demo::FakeDb db{milliseconds(s.db_ms)};
  const auto n = static_cast<std::size_t>(s.callers);
  std::vector<Caller> callers(n);
  std::atomic<std::int64_t> last_load_end_ns{0};
  std::atomic<std::int64_t> finished{0};
  stampede::CacheOptions options;
  options.wait_timeout = milliseconds(s.timeout_ms);
  // Declared after what its loaders use, before the io_context: it outlives every call on it.
  stampede::Cache<demo::Item> cache(options, s.backend.backend<demo::Item>());
  Shared shared{cache, db, s.key, callers, last_load_end_ns, finished};

  asio::io_context io;
  for (std::size_t i = 0; i < n; ++i) asio::co_spawn(io, call(shared, i), asio::detached);
  const int threads_before = os_threads();
  int peak_threads = threads_before;
  {
    std::atomic<std::int64_t> running{s.threads};
    std::vector<std::jthread> runners;
    runners.reserve(static_cast<std::size_t>(s.threads));
    for (std::int64_t t = 0; t < s.threads; ++t) {
      runners.emplace_back([&io, &running] {
        io.run();
        running.fetch_sub(1, std::memory_order_acq_rel);
      });
    }
    // The sampler: the main thread, while the callers wait (it is counted in the peak).
    while (finished.load(std::memory_order_acquire) < s.callers &&
           running.load(std::memory_order_acquire) > 0) {
      peak_threads = std::max(peak_threads, os_threads());
      std::this_thread::sleep_for(milliseconds(1));
    }
    peak_threads = std::max(peak_threads, os_threads());
  }  // joins: io.run() returns once every call has completed

  std::int64_t served = 0;
  std::int64_t errors = 0;
  std::string first_error;
  std::vector<double> latencies_ms;
  std::vector<double> wakes_us;
  latencies_ms.reserve(n);
  wakes_us.reserve(n);
  for (const Caller& c : callers) {
    if (c.resumed != steady::time_point{}) latencies_ms.push_back(demo::to_ms(c.resumed - c.started));
    if (!c.served) {
      if (errors++ == 0) first_error = c.error.empty() ? "not resumed" : c.error;
      continue;
    }
    ++served;
    if (!c.ran_loader.load(std::memory_order_relaxed) && c.load_end_ns != 0) {
      wakes_us.push_back(static_cast<double>(ns_since_epoch(c.resumed) - c.load_end_ns) / 1000.0);
    }
  }
  const stampede::Stats stats = cache.stats();
  const std::int64_t db_hits = db.hits();
  const auto blocking_threads = static_cast<std::int64_t>(cache.options().background_load_threads);
  const double p50 = demo::round2(demo::quantile(latencies_ms, 0.50));
  const double p99 = demo::round2(demo::quantile(latencies_ms, 0.99));
  const double max = demo::round2(demo::quantile(latencies_ms, 1.0));
  const double wake_p50 = demo::round2(demo::quantile(wakes_us, 0.50));
  const double wake_p99 = demo::round2(demo::quantile(wakes_us, 0.99));
  const double wake_max = demo::round2(demo::quantile(wakes_us, 1.0));

  if (s.json) {
    nlohmann::ordered_json j;
    j["demo"] = "cache_rebuild_async";
    j["backend"] = s.backend.name();
    j["key"] = s.key;
    j["callers"] = s.callers;
    j["threads"] = s.threads;
    j["db_hits"] = db_hits;
    j["served"] = served;
    j["errors"] = errors;
    j["os_threads"] = peak_threads;
    j["os_threads_before"] = threads_before;
    j["blocking_threads"] = blocking_threads;
    j["latency_ms"] = {{"p50", p50}, {"p99", p99}, {"max", max}};
    if (wakes_us.empty()) {
      j["wake_us"] = {{"p50", nullptr}, {"p99", nullptr}, {"max", nullptr}};
    } else {
      j["wake_us"] = {{"p50", wake_p50}, {"p99", wake_p99}, {"max", wake_max}};
    }
    j["wake_samples"] = static_cast<std::int64_t>(wakes_us.size());
    if (errors > 0) j["first_error"] = first_error;
    const std::optional<demo::Item> stored = cache.get(s.key);
    j["stored_version"] = stored ? stored->version : 0;
    j["settings"] = {{"db_ms", s.db_ms}, {"timeout_ms", s.timeout_ms}};
    j["stats"] = nlohmann::ordered_json::parse(stampede::to_json(stats).dump());
    std::cout << j.dump() << '\n';
    return 0;
  }

  std::cout << "cache_rebuild_async: backend=" << s.backend.name() << " key=" << s.key
            << " callers=" << s.callers << " threads=" << s.threads << " db_ms=" << s.db_ms
            << " timeout_ms=" << s.timeout_ms << '\n';
  std::cout << "summary: callers=" << s.callers << " db_hits=" << db_hits << " served=" << served
            << " errors=" << errors << " (hits=" << stats.hits << " coalesced=" << stats.coalesced
            << " wait_timeouts=" << stats.wait_timeouts << ")\n";
  if (errors > 0) std::cout << "first error: \"" << first_error << "\"\n";
  std::cout << "latency_ms (start -> resumption): p50=" << p50 << " p99=" << p99 << " max=" << max << '\n';
  if (wakes_us.empty()) {
    std::cout << "wake_us: no load ran in this process\n";
  } else {
    std::cout << "wake_us (load end -> resumption, " << wakes_us.size() << " callers): p50=" << wake_p50
              << " p99=" << wake_p99 << " max=" << wake_max << '\n';
  }
  std::cout << "os_threads: peak=" << peak_threads << " before=" << threads_before
            << " (io threads=" << s.threads << ", the cache's blocking threads=" << blocking_threads << ")\n";
  if (db_hits == 1 && served == s.callers) {
    std::cout << "result: " << s.callers << " concurrent coroutines on " << s.threads
              << " thread(s), 1 database query, at most " << peak_threads
              << " OS threads: the stampede was absorbed and the waiters held no thread\n";
  } else if (db_hits == 0 && served == s.callers) {
    std::cout << "result: no database query here: every caller got a value that another process loaded\n";
  } else {
    std::cout << "result: " << db_hits << " database quer" << (db_hits == 1 ? "y" : "ies") << " for "
              << s.callers << " callers; " << stats.wait_timeouts
              << " caller(s) waited --timeout-ms and queried the database themselves\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  const std::unique_ptr<CLI::App> owner = demo::make_app(
      "Spawns --callers coroutines on an asio::io_context run by --threads threads; they all miss one\n"
      "cold key of a stampede::Cache through stampede::asio::async_get_or_compute in front of a simulated\n"
      "database. Shows one database query, and that the waiting callers hold no thread.",
      "cache_rebuild_async");
  CLI::App& app = *owner;
  app.add_option("--key", s.key, "cache key")->check(demo::non_empty);
  app.add_option("--callers", s.callers, "coroutines started together on the key")
      ->check(demo::integer)
      ->check(CLI::Range(1, 100'000));
  app.add_option("--threads", s.threads, "threads that run the io_context")
      ->check(demo::integer)
      ->check(CLI::Range(1, 256));
  app.add_option("--db-ms", s.db_ms, "simulated database query time")
      ->check(demo::integer)
      ->check(CLI::Range(0, 3'600'000));
  app.add_option("--timeout-ms", s.timeout_ms,
                 "how long a caller waits for another's load before it queries the database itself")
      ->check(demo::integer)
      ->check(CLI::Range(1, 86'400'000));
  app.add_flag("--json", s.json, "print only one JSON object on stdout");
  s.backend.add_flags(app);
  return demo::run(app, argc, argv, [&] { return run_demo(s); });
}
