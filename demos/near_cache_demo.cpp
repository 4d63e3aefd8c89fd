// near_cache_demo: the Redis backend's near cache stays coherent: a reader serves a key from its
// in-process copy and sees every change written by anyone, shortly after the write.
//
// The reader reads --key in a loop for --duration-ms through a Cache with a near cache and prints
// each value change it sees. With --writer the same program instead puts a new value every
// --interval-ms; its values carry their write time ("<n>@<epoch ns>"), so the reader prints how long
// after the write it saw each one (both on one host: one clock). Values written by someone else
// (redis-cli HSET of the value field) are counted as changes without a staleness.
//
//   near_cache_demo --redis redis://127.0.0.1:6379 --key demo:k --duration-ms 5000 --json &
//   near_cache_demo --redis redis://127.0.0.1:6379 --key demo:k --duration-ms 5000 --writer
#include <CLI/CLI.hpp>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <nlohmann/json.hpp>
#include <stampede/stampede.hpp>
#include <string>
#include <thread>
#include <vector>

#include "cli.hpp"
#include "common.hpp"

#if defined(STAMPEDE_DEMO_HAVE_REDIS)
#include <stampede/redis/redis.hpp>
#endif

namespace {

struct Settings {
  std::string redis_url;
  std::string key = "near:demo";
  std::int64_t duration_ms = 5000;
  std::int64_t interval_ms = 100;
  bool writer = false;
  bool json = false;
};

std::int64_t epoch_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "<n>@<epoch ns>": the write time, or -1 for a value of another format.
std::int64_t written_at(const std::string& value) {
  const auto at = value.find('@');
  if (at == std::string::npos) return -1;
  std::int64_t ns = 0;
  auto [p, ec] = std::from_chars(value.data() + at + 1, value.data() + value.size(), ns);
  return ec == std::errc() && p == value.data() + value.size() ? ns : -1;
}

#if defined(STAMPEDE_DEMO_HAVE_REDIS)
int run_demo(const Settings& s) {
  using std::chrono::milliseconds;
  if (s.redis_url.empty()) throw demo::usage_error("--redis URL (or REDIS_URL) is required");
  auto client = stampede::redis::Client::connect(s.redis_url);
  stampede::redis::BackendOptions o;
  o.near_cache.enabled = !s.writer;
  stampede::Backend<std::string> b = stampede::redis::backend<std::string, stampede::StringCodec>(client, o);
  if (!s.writer) {
    auto* store =
        dynamic_cast<stampede::redis::RedisStore<std::string, stampede::StringCodec>*>(b.store.get());
    if (!store->near_cache()->wait_for_tracking(std::chrono::steady_clock::now() + std::chrono::seconds(5))) {
      throw stampede::backend_error("the near cache's tracking connection was not established in 5 s");
    }
  }
  stampede::Cache<std::string> cache({.ttl = std::chrono::hours(1)}, std::move(b));
  const auto end = std::chrono::steady_clock::now() + milliseconds(s.duration_ms);

  if (s.writer) {
    std::int64_t writes = 0;
    while (std::chrono::steady_clock::now() < end) {
      cache.put(s.key, std::to_string(++writes) + "@" + std::to_string(epoch_ns()));
      std::this_thread::sleep_for(milliseconds(s.interval_ms));
    }
    if (s.json) {
      nlohmann::ordered_json j;
      j["demo"] = "near_cache_demo";
      j["role"] = "writer";
      j["key"] = s.key;
      j["writes"] = writes;
      std::cout << j.dump() << '\n';
    } else {
      std::cout << "near_cache_demo: wrote " << writes << " values to " << s.key << '\n';
    }
    return 0;
  }

  std::int64_t reads = 0, changes = 0;
  std::vector<double> staleness_ms;
  std::string last;
  bool have_last = false;
  while (std::chrono::steady_clock::now() < end) {
    const std::string v = cache.get(s.key).value_or("");
    ++reads;
    if (have_last && v == last) continue;
    const std::int64_t at = written_at(v);
    if (have_last) {
      ++changes;
      double ms = -1;
      if (at > 0) {
        ms = static_cast<double>(epoch_ns() - at) / 1e6;
        staleness_ms.push_back(ms);
      }
      if (!s.json) {
        std::cout << "change " << changes << ": \"" << v << "\"";
        if (ms >= 0) std::cout << " seen " << demo::round2(ms) << " ms after the write";
        std::cout << '\n';
      }
    }
    last = v;
    have_last = true;
  }
  const stampede::Stats st = cache.stats();
  const double p50 = demo::quantile(staleness_ms, 0.50), p99 = demo::quantile(staleness_ms, 0.99),
               max = demo::quantile(staleness_ms, 1.0);
  if (s.json) {
    nlohmann::ordered_json j;
    j["demo"] = "near_cache_demo";
    j["role"] = "reader";
    j["key"] = s.key;
    j["reads"] = reads;
    j["near_hits"] = st.near_hits;
    j["changes_seen"] = changes;
    j["staleness_ms"] = {{"p50", demo::round2(p50)}, {"p99", demo::round2(p99)}, {"max", demo::round2(max)}};
    j["near_invalidations"] = st.near_invalidations;
    j["near_flushes"] = st.near_flushes;
    std::cout << j.dump() << '\n';
  } else {
    std::cout << "near_cache_demo: reads=" << reads << " near_hits=" << st.near_hits
              << " changes_seen=" << changes << " staleness_ms: p50=" << demo::round2(p50)
              << " p99=" << demo::round2(p99) << " max=" << demo::round2(max) << '\n';
  }
  return 0;
}
#else
int run_demo(const Settings&) {
  throw demo::usage_error("this build has no Redis backend (the stampede::redis target was not built)");
}
#endif

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  const std::unique_ptr<CLI::App> owner = demo::make_app(
      "Reads --key in a loop through a Cache whose Redis backend has a near cache, and shows each\n"
      "value change it sees and how long after the write (--writer: writes the values instead).",
      "near_cache_demo");
  CLI::App& app = *owner;
  app.add_option("--redis", s.redis_url, "Redis URL, e.g. redis://127.0.0.1:6379/0 (required)")
      ->envname("REDIS_URL")
      ->type_name("URL");
  app.add_option("--key", s.key, "cache key")->check(demo::non_empty);
  app.add_option("--duration-ms", s.duration_ms, "how long to read (or write)")
      ->check(demo::integer)
      ->check(CLI::Range(1, 86'400'000));
  app.add_option("--interval-ms", s.interval_ms, "--writer: time between two writes")
      ->check(demo::integer)
      ->check(CLI::Range(1, 3'600'000));
  app.add_flag("--writer", s.writer, "put a new value every --interval-ms instead of reading");
  app.add_flag("--json", s.json, "print only one JSON object on stdout");
  return demo::run(app, argc, argv, [&] { return run_demo(s); });
}
