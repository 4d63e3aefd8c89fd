// tests/soak/soak_worker.cpp: one worker process of scripts/soak.sh, and the soak's report.
//
//   soak_worker run --redis URL --worker 3 --stats /tmp/soak/worker-3.json   # until SIGTERM
//   soak_worker report --redis URL --stats-dir /tmp/soak --events /tmp/soak/events.log
//
// run: --threads threads call Cache<std::string>::get_or_compute on --keys keys over Redis (short
// TTLs, a short lock_ttl) until SIGTERM or --seconds. The loader identifies its load: it takes a
// per-key sequence number with INCR in Redis, reads the sequence number of the load before it
// ("prev": the value whose expiry it replaces), appends "seq prev worker pid fence start_ms" to a
// per-key list, simulates a DB call (--load-ms), marks the load done, and returns
// "w=<worker> pid=<pid> seq=<seq> fence=<fence>". The fence is the lock's, seen by a TokenLock
// decorator on the loading thread (0: a load without the lock, e.g. after a wait timeout).
// While reading, a Store decorator checks that no read returns a lower fence for a key than a
// read of this process that completed before it began: a lower one means a stale write was
// accepted. Calls that waited (time not spent in their own loader) longer than wait_timeout plus
// --grace-ms are counted, except calls that spanned a SIGSTOP of this process (seen by a SIGCONT
// handler). Counters and RSS go to --stats every 500 ms (so a SIGKILLed worker leaves its last
// snapshot), and once more at exit.
//
// report: reads the per-key load lists from Redis, groups loads by "prev" (loads per expiry),
// explains groups of more than one load by the kill/stop events the script logged, adds up the
// workers' stats files, and prints one JSON object.
#include <sys/prctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cli.hpp"  // demos/cli.hpp: strict flags on CLI11
#include "stampede/cache.hpp"
#include "stampede/json.hpp"
#include "stampede/redis/redis.hpp"

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using json = nlohmann::json;

std::atomic<bool> stop_requested{false};
std::atomic<std::uint64_t> continues{0};  // SIGCONTs seen: a call spanning one was stopped

void on_terminate(int) { stop_requested.store(true); }
void on_continue(int) { continues.fetch_add(1); }

std::int64_t epoch_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// @return this process's resident set size in KiB (VmRSS), 0 if unknown.
std::int64_t rss_kb(pid_t pid = 0) {
  std::ifstream status(pid == 0 ? std::string("/proc/self/status")
                                : "/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return 0;
}

/// Writes `j` to `path` atomically (a reader never sees half a file).
void write_json(const std::string& path, const json& j) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump() << '\n';
  }
  std::filesystem::rename(tmp, path);
}

// The fence of the lock this thread holds for its current load (0: none).
thread_local std::uint64_t held_fence = 0;
// Time this thread spent in its own loader during the current call.
thread_local steady::duration own_load_time{};

/// Forwards to the Redis lock and remembers, per thread, the fence of the lock it took. Thread-safe.
class FenceSeeingLock final : public stampede::TokenLock {
 public:
  explicit FenceSeeingLock(std::shared_ptr<stampede::TokenLock> inner) : inner_(std::move(inner)) {}

 private:
  std::optional<stampede::LockToken> do_try_acquire(std::string_view key,
                                                    std::chrono::milliseconds ttl) override {
    auto token = inner_->try_acquire(key, ttl);
    if (token) held_fence = token->fence;
    return token;
  }
  bool do_release(std::string_view key, std::string_view token) override {
    held_fence = 0;
    return inner_->release(key, token);
  }
  bool do_renew(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) override {
    return inner_->renew(key, token, ttl);
  }
  std::uint64_t do_bump_fence(std::string_view key) override { return inner_->bump_fence(key); }
  std::unique_ptr<stampede::Subscription> do_subscribe(std::string_view key) override {
    return inner_->subscribe(key);
  }
  void do_notify(std::string_view key) override { inner_->notify(key); }

  std::shared_ptr<stampede::TokenLock> inner_;
};

struct Counters {
  std::atomic<std::uint64_t> calls{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> stale_reads{0};
  std::atomic<std::uint64_t> overdue_waits{0};
  std::atomic<std::int64_t> max_wait_ms{0};
  std::atomic<std::uint64_t> locked_loads{0};
  std::atomic<std::uint64_t> unlocked_loads{0};
  std::mutex samples_mu;
  std::vector<std::string> samples;  // first few errors and stale reads

  void sample(std::string s) {
    std::lock_guard l(samples_mu);
    if (samples.size() < 10) samples.push_back(std::move(s));
  }
};

/// Forwards to the Redis store; flags a read that returns a lower fence than a read of this
/// process that completed before it began. Thread-safe.
class StaleReadCheckingStore final : public stampede::Store<std::string> {
 public:
  StaleReadCheckingStore(std::shared_ptr<stampede::Store<std::string>> inner,
                         const std::vector<std::string>& keys, Counters& counters)
      : inner_(std::move(inner)), counters_(counters) {
    for (const auto& k : keys) max_seen_.emplace(k, 0);
  }
  std::optional<stampede::Entry<std::string>> get(std::string_view key,
                                                  std::chrono::system_clock::time_point now) override {
    auto it = max_seen_.find(std::string(key));
    const std::uint64_t floor = it == max_seen_.end() ? 0 : it->second.load();
    auto e = inner_->get(key, now);
    if (e && it != max_seen_.end()) {
      if (e->fence < floor) {
        counters_.stale_reads.fetch_add(1);
        counters_.sample("stale read of " + std::string(key) + ": fence " + std::to_string(e->fence) +
                         " after fence " + std::to_string(floor) + " (" + e->value + ")");
      }
      std::uint64_t seen = it->second.load();
      while (seen < e->fence && !it->second.compare_exchange_weak(seen, e->fence)) {
      }
    }
    return e;
  }
  stampede::PutResult put(std::string_view key, const stampede::Entry<std::string>& entry,
                          std::chrono::system_clock::time_point now) override {
    return inner_->put(key, entry, now);
  }
  stampede::PutResult put_if_unchanged(std::string_view key, std::uint64_t expected,
                                       const stampede::Entry<std::string>& entry,
                                       std::chrono::system_clock::time_point now) override {
    return inner_->put_if_unchanged(key, expected, entry, now);
  }
  std::optional<stampede::Entry<std::string>> get_authoritative(
      std::string_view key, std::chrono::system_clock::time_point now) override {
    return inner_->get_authoritative(key, now);
  }
  void invalidate(std::string_view key, std::uint64_t fence) override { inner_->invalidate(key, fence); }
  void add_counters(stampede::BackendCounters& counters) const override { inner_->add_counters(counters); }

 private:
  std::shared_ptr<stampede::Store<std::string>> inner_;
  Counters& counters_;
  std::unordered_map<std::string, std::atomic<std::uint64_t>> max_seen_;  // keys fixed at construction
};

struct RunConfig {
  std::string redis;
  std::string prefix = "soak:";
  std::string stats;
  std::int64_t worker = 0;
  std::int64_t threads = 8;
  std::int64_t keys = 50;
  std::int64_t ttl_ms = 1000;
  std::int64_t lock_ttl_ms = 1000;
  std::int64_t wait_timeout_ms = 2000;
  std::int64_t load_ms = 20;
  std::int64_t think_ms = 10;
  std::int64_t grace_ms = 1000;
  std::int64_t seconds = 0;
};

std::string key_of(const RunConfig& c, std::int64_t i) { return c.prefix + "key:" + std::to_string(i); }

int run_worker(const RunConfig& cfg) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the soak script
  std::signal(SIGTERM, on_terminate);
  std::signal(SIGINT, on_terminate);
  std::signal(SIGCONT, on_continue);
  const pid_t pid = ::getpid();
  const std::int64_t started_ms = epoch_ms();

  stampede::redis::ClientOptions copts;
  copts.pool_size = static_cast<std::size_t>(cfg.threads) * 2 + 2;
  auto client = stampede::redis::Client::connect(cfg.redis, copts);
  std::vector<std::string> keys;
  for (std::int64_t i = 0; i < cfg.keys; ++i) keys.push_back(key_of(cfg, i));
  Counters counters;
  stampede::Backend<std::string> redis = stampede::redis::backend<std::string>(client, cfg.prefix);
  stampede::Backend<std::string> backend{
      std::make_shared<StaleReadCheckingStore>(redis.store, keys, counters),
      std::make_shared<FenceSeeingLock>(redis.lock), "redis"};
  stampede::CacheOptions opts;
  opts.ttl = std::chrono::milliseconds(cfg.ttl_ms);
  opts.lock_ttl = std::chrono::milliseconds(cfg.lock_ttl_ms);
  opts.wait_timeout = std::chrono::milliseconds(cfg.wait_timeout_ms);
  opts.ttl_jitter = 0.2;
  opts.clock = std::make_shared<stampede::SystemClock>();
  stampede::Cache<std::string> cache(opts, backend);
  const stampede::redis::Script max_set(
      "local c = tonumber(redis.call('GET', KEYS[1]) or '0') "
      "if tonumber(ARGV[1]) > c then redis.call('SET', KEYS[1], ARGV[1]) end return 0");
  const std::int64_t rss_start = rss_kb();

  auto snapshot = [&](bool final) {
    json j;
    j["worker"] = cfg.worker;
    j["pid"] = pid;
    j["started_ms"] = started_ms;
    j["updated_ms"] = epoch_ms();
    j["final"] = final;
    j["calls"] = counters.calls.load();
    j["errors"] = counters.errors.load();
    j["stale_reads"] = counters.stale_reads.load();
    j["overdue_waits"] = counters.overdue_waits.load();
    j["max_wait_ms"] = counters.max_wait_ms.load();
    j["locked_loads"] = counters.locked_loads.load();
    j["unlocked_loads"] = counters.unlocked_loads.load();
    j["rss_start_kb"] = rss_start;
    j["rss_kb"] = rss_kb();
    j["cache"] = stampede::to_json(cache.stats());
    {
      std::lock_guard l(counters.samples_mu);
      j["samples"] = counters.samples;
    }
    write_json(cfg.stats, j);
  };
  snapshot(false);

  const auto deadline =
      cfg.seconds > 0 ? steady::now() + std::chrono::seconds(cfg.seconds) : steady::time_point::max();
  auto body = [&](int thread) {
    std::minstd_rand rng(static_cast<unsigned>(pid) * 131u + static_cast<unsigned>(thread));
    std::uniform_int_distribution<std::int64_t> pick(0, cfg.keys - 1);
    while (!stop_requested.load() && steady::now() < deadline) {
      const std::string& key = keys[static_cast<std::size_t>(pick(rng))];
      auto loader = [&]() -> std::string {
        const auto t0 = steady::now();
        const std::uint64_t fence = held_fence;
        std::string value;
        if (fence == 0) {
          counters.unlocked_loads.fetch_add(1);
          std::this_thread::sleep_for(std::chrono::milliseconds(cfg.load_ms));
          value = "w=" + std::to_string(cfg.worker) + " pid=" + std::to_string(pid) + " seq=0 fence=0";
        } else {
          counters.locked_loads.fetch_add(1);
          const std::string seq = std::to_string(client->command({"INCR", key + ":soak-seq"}).integer);
          const stampede::redis::Reply prev = client->command({"GET", key + ":soak-cur"});
          const std::string record = seq + " " + (prev.is_nil() ? "0" : prev.str) + " " +
                                     std::to_string(cfg.worker) + " " + std::to_string(pid) + " " +
                                     std::to_string(fence) + " " + std::to_string(epoch_ms());
          client->command({"RPUSH", key + ":soak-loads", record});
          std::this_thread::sleep_for(std::chrono::milliseconds(cfg.load_ms));
          client->eval(max_set, {key + ":soak-cur"}, {seq});
          client->command({"HSET", key + ":soak-done", seq, std::to_string(epoch_ms())});
          value = "w=" + std::to_string(cfg.worker) + " pid=" + std::to_string(pid) + " seq=" + seq +
                  " fence=" + std::to_string(fence);
        }
        own_load_time += steady::now() - t0;
        return value;
      };
      const std::uint64_t continues_before = continues.load();
      own_load_time = {};
      const auto start = steady::now();
      try {
        (void)cache.get_or_compute(key, loader);
      } catch (const std::exception& e) {
        counters.errors.fetch_add(1);
        counters.sample(std::string("error on ") + key + ": " + e.what());
      }
      counters.calls.fetch_add(1);
      if (continues.load() == continues_before) {
        const auto waited =
            std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - start - own_load_time)
                .count();
        std::int64_t max = counters.max_wait_ms.load();
        while (waited > max && !counters.max_wait_ms.compare_exchange_weak(max, waited)) {
        }
        if (waited > cfg.wait_timeout_ms + cfg.grace_ms) {
          counters.overdue_waits.fetch_add(1);
          counters.sample("waited " + std::to_string(waited) + " ms on " + key);
        }
      }
      if (cfg.think_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(cfg.think_ms));
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < cfg.threads; ++t) threads.emplace_back(body, t);
  while (!stop_requested.load() && steady::now() < deadline) {
    std::this_thread::sleep_for(500ms);  // the snapshot period, not a synchronisation
    snapshot(false);
  }
  for (auto& t : threads) t.join();
  snapshot(true);
  return 0;
}

// ---- report ------------------------------------------------------------------------------------

struct Load {
  std::uint64_t seq = 0;
  std::uint64_t prev = 0;
  std::int64_t worker = 0;
  std::int64_t pid = 0;
  std::uint64_t fence = 0;
  std::int64_t start_ms = 0;
  std::optional<std::int64_t> done_ms;
};

struct Events {
  std::map<std::int64_t, std::int64_t> killed;                                 // pid -> when
  std::multimap<std::int64_t, std::pair<std::int64_t, std::int64_t>> stopped;  // pid -> [from, to]
};

Events read_events(const std::string& path) {
  Events ev;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream s(line);
    std::string what;
    std::int64_t worker = 0;
    std::int64_t pid = 0;
    std::int64_t t0 = 0;
    std::int64_t t1 = 0;
    s >> what >> worker >> pid >> t0;
    if (what == "kill") ev.killed[pid] = t0;
    if (what == "stop" && (s >> t1)) ev.stopped.emplace(pid, std::make_pair(t0, t1));
  }
  return ev;
}

// A load disturbed by the harness: its process died during it, or was stopped during it.
bool disturbed(const Load& l, const Events& ev, std::int64_t slack_ms) {
  if (!l.done_ms && ev.killed.count(l.pid) != 0) return true;
  auto [from, to] = ev.stopped.equal_range(l.pid);
  for (auto it = from; it != to; ++it) {
    const auto [t0, t1] = it->second;
    const std::int64_t end = l.done_ms.value_or(INT64_MAX);
    if (l.start_ms <= t1 + slack_ms && end >= t0 - slack_ms) return true;
  }
  return false;
}

struct ReportConfig {
  std::string redis;
  std::string prefix = "soak:";
  std::string stats_dir;
  std::string events;
  std::int64_t keys = 50;
  std::int64_t lock_ttl_ms = 1000;
  std::int64_t redis_pid = 0;
  std::int64_t redis_rss_start_kb = 0;
  double minutes = 0;
};

int report(const ReportConfig& cfg) {
  auto client = stampede::redis::Client::connect(cfg.redis);
  const Events ev = read_events(cfg.events);
  std::map<std::int64_t, std::int64_t> per_expiry;  // loads in a group -> groups
  std::uint64_t loads = 0;
  std::uint64_t unfinished = 0;
  std::uint64_t explained = 0;
  std::uint64_t unexplained = 0;
  json unexplained_samples = json::array();
  RunConfig names;
  names.prefix = cfg.prefix;
  for (std::int64_t i = 0; i < cfg.keys; ++i) {
    const std::string key = key_of(names, i);
    std::map<std::uint64_t, std::int64_t> done;
    const stampede::redis::Reply d = client->command({"HGETALL", key + ":soak-done"});
    for (std::size_t j = 0; j + 1 < d.elements.size(); j += 2) {
      done[std::stoull(d.elements[j].str)] = std::stoll(d.elements[j + 1].str);
    }
    std::map<std::uint64_t, std::vector<Load>> by_prev;
    const stampede::redis::Reply list = client->command({"LRANGE", key + ":soak-loads", "0", "-1"});
    for (const auto& item : list.elements) {
      Load l;
      std::istringstream s(item.str);
      s >> l.seq >> l.prev >> l.worker >> l.pid >> l.fence >> l.start_ms;
      if (auto it = done.find(l.seq); it != done.end()) l.done_ms = it->second;
      ++loads;
      if (!l.done_ms) ++unfinished;
      by_prev[l.prev].push_back(l);
    }
    for (const auto& [prev, group] : by_prev) {
      per_expiry[static_cast<std::int64_t>(group.size())]++;
      if (group.size() < 2) continue;
      const bool why = std::any_of(group.begin(), group.end(),
                                   [&](const Load& l) { return disturbed(l, ev, cfg.lock_ttl_ms); });
      (why ? explained : unexplained)++;
      if (!why && unexplained_samples.size() < 10) {
        json g = json::array();
        for (const auto& l : group) {
          g.push_back({{"seq", l.seq},
                       {"worker", l.worker},
                       {"pid", l.pid},
                       {"fence", l.fence},
                       {"start_ms", l.start_ms},
                       {"done_ms", l.done_ms ? json(*l.done_ms) : json(nullptr)}});
        }
        unexplained_samples.push_back({{"key", key}, {"prev", prev}, {"loads", g}});
      }
    }
  }

  json workers = json::array();
  std::uint64_t stale = 0;
  std::uint64_t overdue = 0;
  std::uint64_t errors = 0;
  std::uint64_t calls = 0;
  std::int64_t max_wait = 0;
  json cache_totals = json::object();
  json samples = json::array();
  std::vector<std::filesystem::path> files;
  for (const auto& f : std::filesystem::directory_iterator(cfg.stats_dir)) {
    if (f.path().extension() == ".json") files.push_back(f.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::ifstream in(f);
    json j = json::parse(in, nullptr, false);
    if (j.is_discarded()) continue;
    stale += j.value("stale_reads", 0ull);
    overdue += j.value("overdue_waits", 0ull);
    errors += j.value("errors", 0ull);
    calls += j.value("calls", 0ull);
    max_wait = std::max<std::int64_t>(max_wait, j.value("max_wait_ms", 0ll));
    for (const auto& [name, value] : j["cache"].items()) {
      if (value.is_number_unsigned())
        cache_totals[name] = cache_totals.value(name, 0ull) + value.get<std::uint64_t>();
    }
    for (const auto& s : j["samples"]) {
      if (samples.size() < 10) samples.push_back(s);
    }
    workers.push_back(
        {{"worker", j["worker"]},
         {"pid", j["pid"]},
         {"ended",
          j.value("final", false) ? "exited" : (ev.killed.count(j.value("pid", 0ll)) ? "killed" : "unknown")},
         {"calls", j["calls"]},
         {"rss_start_kb", j["rss_start_kb"]},
         {"rss_end_kb", j["rss_kb"]}});
  }

  json out;
  out["minutes"] = cfg.minutes;
  out["loads"] = loads;
  out["loads_unfinished"] = unfinished;
  json hist = json::object();
  for (const auto& [n, groups] : per_expiry) hist[std::to_string(n)] = groups;
  out["loads_per_expiry"] = hist;
  out["expiries_with_several_loads"] = {{"explained_by_kill_or_stop", explained},
                                        {"unexplained", unexplained}};
  if (!unexplained_samples.empty()) out["unexplained_samples"] = unexplained_samples;
  out["stale_writes_accepted"] = stale;
  out["callers_waited_past_timeout"] = overdue;
  out["max_wait_ms"] = max_wait;
  out["errors"] = errors;
  out["calls"] = calls;
  out["kills"] = ev.killed.size();
  out["stops"] = ev.stopped.size();
  out["cache"] = cache_totals;
  if (!samples.empty()) out["samples"] = samples;
  out["redis_rss_kb"] = {{"start", cfg.redis_rss_start_kb},
                         {"end", cfg.redis_pid > 0 ? rss_kb(static_cast<pid_t>(cfg.redis_pid)) : 0}};
  out["workers"] = workers;
  std::cout << out.dump(2) << '\n';
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  RunConfig run;
  ReportConfig rep;
  const std::unique_ptr<CLI::App> owner = demo::make_app(
      "One worker of scripts/soak.sh (run), or the soak's JSON report (report). See the comment at the "
      "top of tests/soak/soak_worker.cpp.",
      "soak_worker");
  CLI::App& app = *owner;
  app.require_subcommand(1);
  // Flags of both modes, on the program; the modes accept them after their name too.
  app.add_option("--redis", run.redis, "redis://127.0.0.1:PORT of the soak's server")
      ->required()
      ->check(demo::non_empty);
  app.add_option("--prefix", run.prefix, "key prefix of the soak's keys")->check(demo::non_empty);
  app.add_option("--keys", run.keys, "keys the callers pick from")
      ->check(demo::integer)
      ->check(CLI::Range(1, 100000));
  app.add_option("--lock-ttl-ms", run.lock_ttl_ms, "lock_ttl (report: the slack for stops)")
      ->check(demo::integer)
      ->check(CLI::Range(1, 3600000));

  const std::string common =
      "Also takes the flags of 'soak_worker --help': --redis, --prefix, --keys, --lock-ttl-ms.";
  CLI::App* run_cmd = demo::subcommand(app, "run", "a worker until SIGTERM (or --seconds)");
  run_cmd->footer(common);
  run_cmd->add_option("--stats", run.stats, "where to write this worker's stats JSON")
      ->required()
      ->check(demo::non_empty);
  run_cmd->add_option("--worker", run.worker, "this worker's number")
      ->check(demo::integer)
      ->check(CLI::Range(0, 1000));
  run_cmd->add_option("--threads", run.threads, "caller threads")
      ->check(demo::integer)
      ->check(CLI::Range(1, 256));
  run_cmd->add_option("--ttl-ms", run.ttl_ms, "cache ttl")
      ->check(demo::integer)
      ->check(CLI::Range(1, 3600000));
  run_cmd->add_option("--wait-timeout-ms", run.wait_timeout_ms, "wait_timeout")
      ->check(demo::integer)
      ->check(CLI::Range(1, 3600000));
  run_cmd->add_option("--load-ms", run.load_ms, "simulated DB time of a load")
      ->check(demo::integer)
      ->check(CLI::Range(0, 60000));
  run_cmd->add_option("--think-ms", run.think_ms, "pause between two calls of a thread")
      ->check(demo::integer)
      ->check(CLI::Range(0, 60000));
  run_cmd->add_option("--grace-ms", run.grace_ms, "a wait longer than wait_timeout + this is overdue")
      ->check(demo::integer)
      ->check(CLI::Range(0, 60000));
  run_cmd->add_option("--seconds", run.seconds, "stop after this long; 0 = at SIGTERM only")
      ->check(demo::integer)
      ->check(CLI::Range(0, 86400));

  CLI::App* report_cmd = demo::subcommand(app, "report", "print the soak's JSON report");
  report_cmd->footer(common);
  report_cmd->add_option("--stats-dir", rep.stats_dir, "directory of the workers' stats files")
      ->required()
      ->check(demo::non_empty);
  report_cmd->add_option("--events", rep.events, "the script's kill/stop log")
      ->required()
      ->check(demo::non_empty);
  report_cmd->add_option("--redis-pid", rep.redis_pid, "redis-server's pid (for its RSS)")
      ->check(demo::integer)
      ->check(CLI::Range(0, 1 << 30));
  report_cmd->add_option("--redis-rss-start-kb", rep.redis_rss_start_kb, "redis-server's RSS at start")
      ->check(demo::integer)
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 40));
  report_cmd->add_option("--minutes", rep.minutes, "the soak's length, echoed in the JSON")
      ->check(demo::number)
      ->check(CLI::Range(0.0, 100000.0));

  return demo::run(app, argc, argv, [&] {
    if (run_cmd->parsed()) return run_worker(run);
    rep.redis = run.redis;
    rep.prefix = run.prefix;
    rep.keys = run.keys;
    rep.lock_ttl_ms = run.lock_ttl_ms;
    return report(rep);
  });
}
