// cache_rebuild_swr: stale-while-revalidate, round by round: fresh -> stale (served at once while one
// background refresh runs) -> fresh again -> expired.
//
// Every --interval-ms a round releases --workers callers together (std::latch) on one key of a
// stampede::Cache in Mode::stale_while_revalidate. Each request is labelled by what it found:
//   fresh - a value younger than --soft-ttl, returned at once
//   stale - a value past --soft-ttl but within --swr-window, returned at once; the cache schedules
//           one background refresh for the key, however many stale hits there are
//   miss  - nothing servable (cold, or past soft-ttl + swr-window): one worker queries the simulated
//           database, the others wait for its value
// After the rounds the demo stays idle until the entry passes its hard expiry and runs one last round.
// With --db-down-after-round R the database fails from round R on; with --fail-safe-s S the last good
// value is kept S seconds past its hard expiry and served instead of the error (a round is labelled
// fail-safe when a worker got a value past its hard expiry), and the database is tried once per
// --fail-safe-throttle-s.
//
//   cache_rebuild_swr --soft-ttl 0.5 --swr-window 1 --db-ms 200 --rounds 6 --interval-ms 300 --json
//   cache_rebuild_swr --soft-ttl 0.5 --swr-window 0.5 --rounds 12 --interval-ms 300
//       --db-down-after-round 3 --fail-safe-s 60 --json     # "fail_safe_served":..., "db_errors":...
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <latch>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
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
  double soft_ttl_s = 10;
  double swr_window_s = 10;
  std::int64_t db_ms = 500;
  std::int64_t workers = 8;
  std::int64_t rounds = 6;
  std::int64_t interval_ms = 4000;
  std::int64_t lock_ttl_ms = 5000;
  std::int64_t timeout_ms = 1000;
  std::int64_t db_down_after_round = -1;  // < 0 = never
  double fail_safe_s = 0;
  double fail_safe_throttle_s = 0;  // 0 = --soft-ttl
  bool skip_expiry = false;
  bool json = false;
  demo::BackendChoice backend;
};

struct Round {
  std::int64_t index = 0;
  double t_ms = 0;  // start, since the demo began
  std::int64_t fresh = 0, stale = 0, miss = 0, errors = 0, fail_safe = 0;
  std::int64_t db_hits = 0;  // total so far, after the round
  double max_fresh_ms = 0, max_stale_ms = 0, max_miss_ms = 0;
  std::string phase;
};

class Demo {
 public:
  explicit Demo(const Settings& s)
      : s_(s),
        db_(std::chrono::milliseconds(s.db_ms)),
        cache_({.mode = stampede::Mode::stale_while_revalidate,
                .soft_ttl = demo::seconds_to_ms(s.soft_ttl_s),
                .swr_window = demo::seconds_to_ms(s.swr_window_s),
                .lock_ttl = std::chrono::milliseconds(s.lock_ttl_ms),
                .wait_timeout = std::chrono::milliseconds(s.timeout_ms),
                .fail_safe_max_age = demo::seconds_to_ms(s.fail_safe_s),
                .fail_safe_throttle =
                    demo::seconds_to_ms(s.fail_safe_throttle_s > 0 ? s.fail_safe_throttle_s : s.soft_ttl_s),
                .on_event = [this](const stampede::Event& e) { on_event(e); }},
               demo::probe(s.backend.backend<demo::Item>())) {}

  int run() {
    say("cache_rebuild_swr: backend=" + s_.backend.name() + " key=" + s_.key +
        " workers=" + std::to_string(s_.workers) + " soft_ttl=" + demo::format_number(s_.soft_ttl_s) +
        "s swr_window=" + demo::format_number(s_.swr_window_s) + "s db_ms=" + std::to_string(s_.db_ms) +
        " rounds=" + std::to_string(s_.rounds) + " interval_ms=" + std::to_string(s_.interval_ms));
    for (std::int64_t r = 0; r < s_.rounds; ++r) {
      std::this_thread::sleep_until(start_ + std::chrono::milliseconds(r * s_.interval_ms));
      if (s_.db_down_after_round >= 0 && r == s_.db_down_after_round) {
        db_.set_down(true);
        say("database down from round " + std::to_string(r) + " on");
      }
      report(run_round(r));
    }
    if (!s_.skip_expiry) {
      // Nothing refreshes an entry nobody asks for: wait out soft-ttl + swr-window after the last load.
      cache_.wait_idle();
      const auto last_load =
          std::chrono::system_clock::time_point(std::chrono::milliseconds(db_.last_load_ms()));
      const auto hard = last_load + demo::seconds_to_ms(s_.soft_ttl_s) + demo::seconds_to_ms(s_.swr_window_s);
      const auto margin = std::max<std::chrono::milliseconds>(std::chrono::milliseconds(50),
                                                              demo::seconds_to_ms(s_.soft_ttl_s) / 10);
      const auto idle = std::chrono::duration_cast<std::chrono::milliseconds>(
          hard + margin - std::chrono::system_clock::now());
      if (idle.count() > 0) {
        say("idle " + std::to_string(idle.count()) +
            " ms: no requests, so no refresh; the entry passes its hard expiry (soft-ttl + swr-window)");
        std::this_thread::sleep_for(idle);
      }
      report(run_round(s_.rounds));
    }
    cache_.wait_idle();
    return finish();
  }

 private:
  Round run_round(std::int64_t index) {
    struct Outcome {
      std::string source;
      double latency_ms = 0;
    };
    const auto workers = static_cast<std::size_t>(s_.workers);
    std::vector<Outcome> outcomes(workers);
    std::latch go(static_cast<std::ptrdiff_t>(workers));
    Round round;
    round.index = index;
    round.t_ms = demo::to_ms(std::chrono::steady_clock::now() - start_);
    {
      std::vector<std::jthread> threads;
      threads.reserve(workers);
      for (std::size_t w = 0; w < workers; ++w) {
        threads.emplace_back([this, &outcomes, &go, w] {
          Outcome& out = outcomes[w];
          go.arrive_and_wait();
          const auto t0 = std::chrono::steady_clock::now();
          demo::Probe::begin();
          try {
            // A stale hit runs this loader later on a refresher thread, after this call returned:
            // it captures only what outlives the cache (db_ is declared before cache_).
            const demo::Item item = cache_.get_or_compute(s_.key, [db = &db_, key = s_.key] {
              demo::Probe::note_load();
              return db->load(key);
            });
            if (past_hard_expiry(item)) {
              out.source = "fail-safe";
            } else {
              switch (demo::Probe::first()) {
                case demo::Found::fresh:
                  out.source = "fresh";
                  break;
                case demo::Found::stale:
                  out.source = "stale";
                  break;
                default:
                  out.source = demo::Probe::loaded_here() ? "db" : "wait";
                  break;
              }
            }
          } catch (const std::exception& e) {
            out.source = "error";
            std::lock_guard lock(out_mu_);
            if (!s_.json) std::cerr << "worker=" << w << " error: " << e.what() << '\n';
          }
          out.latency_ms = demo::to_ms(std::chrono::steady_clock::now() - t0);
        });
      }
    }
    for (const Outcome& o : outcomes) {
      if (o.source == "fresh") {
        ++round.fresh;
        round.max_fresh_ms = std::max(round.max_fresh_ms, o.latency_ms);
      } else if (o.source == "stale") {
        ++round.stale;
        round.max_stale_ms = std::max(round.max_stale_ms, o.latency_ms);
      } else if (o.source == "error") {
        ++round.errors;
      } else if (o.source == "fail-safe") {
        ++round.fail_safe;
      } else {
        ++round.miss;
        round.max_miss_ms = std::max(round.max_miss_ms, o.latency_ms);
      }
    }
    round.db_hits = db_.hits();
    if (round.fail_safe > 0) {
      round.phase = "fail-safe";
    } else if (round.miss > 0) {
      round.phase = index == 0 ? "miss" : "expired";
    } else if (round.stale > 0) {
      round.phase = "stale";
    } else if (round.errors == 0) {
      round.phase = "fresh";
    } else {
      round.phase = "error";
    }
    rounds_.push_back(round);
    return round;
  }

  void report(const Round& r) {
    std::ostringstream line;
    line << "round=" << r.index << " t=" << std::fixed << std::setprecision(2) << r.t_ms / 1000.0 << "s "
         << std::left << std::setw(8) << r.phase << std::right << " fresh=" << r.fresh << " stale=" << r.stale
         << " miss=" << r.miss << " db_hits=" << r.db_hits
         << " max_latency_ms=" << demo::round2(std::max({r.max_fresh_ms, r.max_stale_ms, r.max_miss_ms}));
    if (r.phase == "stale") line << "  <- stale served at once; one background refresh";
    if (r.phase == "miss") line << "  <- cold key: one worker queries the DB, the others wait";
    if (r.phase == "expired") line << "  <- past soft-ttl + swr-window: a miss again, one DB query";
    if (r.phase == "fail-safe") line << "  <- DB down: the last good value, past its hard expiry";
    if (r.fail_safe > 0) line << " fail_safe=" << r.fail_safe;
    if (r.errors > 0) line << " errors=" << r.errors;
    say(line.str());
  }

  int finish() {
    Round total;
    std::vector<std::string> phases;
    for (const Round& r : rounds_) {
      total.fresh += r.fresh;
      total.stale += r.stale;
      total.miss += r.miss;
      total.errors += r.errors;
      total.fail_safe += r.fail_safe;
      total.max_fresh_ms = std::max(total.max_fresh_ms, r.max_fresh_ms);
      total.max_stale_ms = std::max(total.max_stale_ms, r.max_stale_ms);
      total.max_miss_ms = std::max(total.max_miss_ms, r.max_miss_ms);
      if (phases.empty() || phases.back() != r.phase) phases.push_back(r.phase);
    }
    const stampede::Stats stats = cache_.stats();
    const std::int64_t requests = static_cast<std::int64_t>(rounds_.size()) * s_.workers;
    if (s_.json) {
      nlohmann::ordered_json j;
      j["demo"] = "cache_rebuild_swr";
      j["backend"] = s_.backend.name();
      j["key"] = s_.key;
      j["workers"] = s_.workers;
      j["rounds"] = rounds_.size();
      j["requests"] = requests;
      j["fresh"] = total.fresh;
      j["stale"] = total.stale;
      j["misses"] = total.miss;
      j["errors"] = total.errors;
      j["db_hits"] = db_.hits();
      j["db_errors"] = db_.errors();
      j["fail_safe_served"] = stats.fail_safe_served;
      j["fail_safe_requests"] = total.fail_safe;
      j["refreshes"] = stats.refreshes;
      j["max_stale_latency_ms"] = demo::round2(total.max_stale_ms);
      j["max_fresh_latency_ms"] = demo::round2(total.max_fresh_ms);
      j["max_miss_latency_ms"] = demo::round2(total.max_miss_ms);
      j["phases"] = phases;
      nlohmann::ordered_json per_round = nlohmann::ordered_json::array();
      for (const Round& r : rounds_) {
        per_round.push_back({{"round", r.index},
                             {"t_ms", demo::round2(r.t_ms)},
                             {"phase", r.phase},
                             {"fresh", r.fresh},
                             {"stale", r.stale},
                             {"miss", r.miss},
                             {"fail_safe", r.fail_safe},
                             {"errors", r.errors},
                             {"db_hits", r.db_hits}});
      }
      j["per_round"] = per_round;
      j["stats"] = nlohmann::ordered_json::parse(stampede::to_json(stats).dump());
      std::cout << j.dump() << '\n';
      return 0;
    }
    std::string flow;
    for (const std::string& p : phases) flow += (flow.empty() ? "" : " -> ") + p;
    std::ostringstream out;
    out << "summary: requests=" << requests << " fresh=" << total.fresh << " stale=" << total.stale
        << " miss=" << total.miss << " fail_safe=" << total.fail_safe << " errors=" << total.errors
        << " db_hits=" << db_.hits() << " db_errors=" << db_.errors()
        << " fail_safe_served=" << stats.fail_safe_served << " refreshes=" << stats.refreshes
        << " max_stale_latency_ms=" << demo::round2(total.max_stale_ms) << '\n'
        << "phases: " << flow << '\n'
        << "result: " << total.stale << " stale requests were answered at once (max "
        << demo::round2(total.max_stale_ms) << " ms) while " << stats.refreshes
        << " background refresh(es) ran; " << db_.hits() << " DB queries for " << requests << " requests";
    say(out.str());
    return 0;
  }

  void on_event(const stampede::Event& e) {
    if (s_.json) return;
    if (e.type != stampede::EventType::refresh_done && e.type != stampede::EventType::refresh_failed) return;
    std::ostringstream line;
    line << "        t=" << std::fixed << std::setprecision(2)
         << demo::to_ms(std::chrono::steady_clock::now() - start_) / 1000.0 << "s background "
         << stampede::to_string(e.type) << " (query took "
         << demo::round2(std::chrono::duration<double, std::milli>(e.duration).count()) << " ms)";
    say(line.str());
  }

  /// @return true if `item` is older than soft-ttl + swr-window (only fail-safe serves such a value).
  bool past_hard_expiry(const demo::Item& item) const {
    const auto loaded = std::chrono::system_clock::time_point(std::chrono::milliseconds(item.loaded_at_ms));
    return std::chrono::system_clock::now() >
           loaded + demo::seconds_to_ms(s_.soft_ttl_s) + demo::seconds_to_ms(s_.swr_window_s);
  }

  void say(const std::string& text) {
    if (s_.json) return;
    std::lock_guard lock(out_mu_);
    std::cout << text << std::endl;
  }

  const Settings& s_;
  std::mutex out_mu_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::vector<Round> rounds_;
  demo::FakeDb db_;  // before cache_: refreshes still running in ~Cache use it
  stampede::Cache<demo::Item> cache_;
};

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  const std::unique_ptr<CLI::App> owner = demo::make_app(
      "Stale-while-revalidate on one key, round by round: fresh -> stale served at once while\n"
      "one background refresh runs -> fresh again -> expired (after an idle wait).",
      "cache_rebuild_swr");
  CLI::App& app = *owner;
  app.add_option("--key", s.key, "cache key")->check(demo::non_empty);
  app.add_option("--soft-ttl", s.soft_ttl_s, "seconds a value is fresh (fractions allowed)")
      ->check(demo::number)
      ->check(CLI::Range(0.001, 86400.0 * 365));
  app.add_option("--swr-window", s.swr_window_s,
                 "seconds after --soft-ttl a stale value is still served (0 = never stale)")
      ->check(demo::number)
      ->check(CLI::Range(0.0, 86400.0 * 365));
  app.add_option("--db-ms", s.db_ms, "simulated database query time")
      ->check(demo::integer)
      ->check(CLI::Range(0, 3'600'000));
  app.add_option("--workers", s.workers, "requests released together in each round")
      ->check(demo::integer)
      ->check(CLI::Range(1, 10'000));
  app.add_option("--rounds", s.rounds, "rounds of requests")
      ->check(demo::integer)
      ->check(CLI::Range(1, 100'000));
  app.add_option("--interval-ms", s.interval_ms, "time between the starts of two rounds")
      ->check(demo::integer)
      ->check(CLI::Range(0, 86'400'000));
  app.add_option("--lock-ttl-ms", s.lock_ttl_ms, "token lock lease while loading/refreshing")
      ->check(demo::integer)
      ->check(CLI::Range(1, 86'400'000));
  app.add_option("--timeout-ms", s.timeout_ms, "how long a request waits for another's load")
      ->check(demo::integer)
      ->check(CLI::Range(1, 86'400'000));
  app.add_option("--db-down-after-round", s.db_down_after_round,
                 "the simulated database fails from this round on (0 = the first); -1 = never")
      ->check(demo::integer)
      ->check(CLI::Range(-1, 100'000));
  app.add_option(
         "--fail-safe-s", s.fail_safe_s,
         "fail-safe: seconds past its hard expiry the last good value is served on a DB error; 0 = off")
      ->check(demo::number)
      ->check(CLI::Range(0.0, 86400.0 * 365));
  app.add_option("--fail-safe-throttle-s", s.fail_safe_throttle_s,
                 "fail-safe: seconds between two DB attempts while it fails; 0 = --soft-ttl")
      ->check(demo::number)
      ->check(CLI::Range(0.0, 86400.0 * 365));
  app.add_flag("--skip-expiry", s.skip_expiry, "do not wait for the hard expiry after the rounds");
  app.add_flag("--json", s.json, "print only one JSON object on stdout");
  s.backend.add_flags(app);
  return demo::run(app, argc, argv, [&] {
    Demo d(s);
    return d.run();
  });
}
