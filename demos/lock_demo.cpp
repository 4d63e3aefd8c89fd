// lock_demo: the token lock, in three modes, on the embedded or the Redis backend.
//
//   once      try to take the lock once; work --work-ms; release (exit 1 if someone else holds it)
//   blocking  wait up to --timeout-ms for the lock (backoff from --retry-ms, with jitter), work, release
//   watchdog  like blocking, with a watchdog renewing the lease every --renew-ms while working, so a
//             --work-ms longer than --ttl-ms keeps the lock
//
// Without the watchdog, work longer than --ttl-ms loses the lock: release() then reports that the lock
// was no longer ours (and another process could have taken it meanwhile). Every line carries the pid
// and the time since start, so that two processes (--redis) can be compared side by side.
//
//   lock_demo blocking --resource demo --ttl-ms 5000 --work-ms 2000 --timeout-ms 10000 --retry-ms 200
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stampede/stampede.hpp>
#include <string>
#include <thread>

#include "backend.hpp"
#include "cli.hpp"
#include "common.hpp"

namespace {

struct Settings {
  std::string mode;
  std::string resource = "demo";
  std::int64_t ttl_ms = 5000;
  std::int64_t work_ms = 2000;
  std::int64_t timeout_ms = 10000;
  std::int64_t retry_ms = 200;
  std::int64_t renew_ms = 2000;
  demo::BackendChoice backend;
};

class Log {
 public:
  void operator()(const std::string& text) {
    std::lock_guard lock(mu_);
    std::cout << "[pid " << ::getpid() << " +" << std::setw(6)
              << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                       start_)
                     .count()
              << " ms] " << text << std::endl;
  }

 private:
  std::mutex mu_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

int run_demo(const Settings& s) {
  using std::chrono::milliseconds;
  Log log;
  std::shared_ptr<stampede::TokenLock> lock = s.backend.lock();
  const milliseconds ttl(s.ttl_ms);
  log("lock_demo " + s.mode + ": backend=" + s.backend.name() + " resource=" + s.resource +
      " ttl_ms=" + std::to_string(s.ttl_ms) + " work_ms=" + std::to_string(s.work_ms));

  std::optional<stampede::LockLease> lease;
  if (s.mode == "once") {
    std::optional<stampede::LockToken> token = lock->try_acquire(s.resource, ttl);
    if (!token) {
      log("not acquired: another owner holds '" + s.resource + "'");
      return 1;
    }
    lease.emplace(lock, s.resource, *token, ttl);
  } else {
    stampede::AcquireOptions options{.timeout = milliseconds(s.timeout_ms),
                                     .retry = milliseconds(s.retry_ms),
                                     .max_retry = std::max(milliseconds(s.retry_ms), milliseconds(1000))};
    stampede::WatchdogOptions watchdog;
    if (s.mode == "watchdog") {
      watchdog.enabled = true;
      watchdog.interval = milliseconds(s.renew_ms);
      watchdog.on_lost = [&log] { log("watchdog: renewal failed, the lease is LOST"); };
    }
    log("waiting up to " + std::to_string(s.timeout_ms) + " ms for the lock");
    const auto t0 = std::chrono::steady_clock::now();
    lease = stampede::LockLease::acquire(lock, s.resource, ttl, options, std::move(watchdog));
    if (!lease) {
      log("timed out after " + std::to_string(s.timeout_ms) + " ms: the lock stayed busy");
      return 1;
    }
    log("waited " +
        std::to_string(static_cast<std::int64_t>(demo::to_ms(std::chrono::steady_clock::now() - t0))) +
        " ms");
  }
  log("acquired: token=" + lease->token().token + " fence=" + std::to_string(lease->token().fence) +
      (s.mode == "watchdog" ? " (watchdog renews every " + std::to_string(s.renew_ms) + " ms)" : ""));

  // Work in slices so progress shows; a lease lost meanwhile is reported as it happens.
  const auto work_end = std::chrono::steady_clock::now() + milliseconds(s.work_ms);
  const milliseconds slice(std::clamp<std::int64_t>(s.work_ms / 4, 1, 1000));
  while (std::chrono::steady_clock::now() < work_end) {
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(slice, work_end - std::chrono::steady_clock::now()));
    if (std::chrono::steady_clock::now() < work_end) log("working...");
  }
  log("work done after " + std::to_string(s.work_ms) + " ms");

  const bool lost = lease->lost();
  const bool released = lease->release();
  if (released) {
    log("released: the lock was still ours");
  } else {
    log("release refused: the lock was no longer ours (its " + std::to_string(s.ttl_ms) +
        " ms TTL ran out during the work; another owner may have taken it)");
  }
  return lost ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  const std::unique_ptr<CLI::App> owner = demo::make_app(
      "Takes a stampede token lock on --resource, works for --work-ms, releases it. Start two\n"
      "processes against one Redis (--redis) to see mutual exclusion across processes.",
      "lock_demo");
  CLI::App& app = *owner;
  app.require_subcommand(1);
  // Flags of every mode, on the program; the modes accept them after their name too.
  app.add_option("--resource", s.resource, "name of the locked resource (the lock key)")
      ->check(demo::non_empty);
  app.add_option("--ttl-ms", s.ttl_ms, "lease of the lock; it expires by itself after this")
      ->check(demo::integer)
      ->check(CLI::Range(1, 86'400'000));
  app.add_option("--work-ms", s.work_ms, "simulated work while holding the lock")
      ->check(demo::integer)
      ->check(CLI::Range(0, 86'400'000));
  s.backend.add_flags(app);

  const std::string common =
      "Also takes the flags of 'lock_demo --help': --resource, --ttl-ms, --work-ms, --redis.";
  CLI::App* once = demo::subcommand(app, "once", "one try: take the lock or exit 1, work, release");
  CLI::App* blocking =
      demo::subcommand(app, "blocking", "wait for the lock with backoff + jitter, work, release");
  CLI::App* watchdog = demo::subcommand(
      app, "watchdog", "like blocking, with a watchdog renewing the lease every --renew-ms while working");
  for (CLI::App* mode : {once, blocking, watchdog}) {
    mode->footer(common);
    mode->callback([&s, mode] { s.mode = mode->get_name(); });
  }
  for (CLI::App* mode : {blocking, watchdog}) {
    mode->add_option("--timeout-ms", s.timeout_ms, "give up waiting for the lock after this")
        ->check(demo::integer)
        ->check(CLI::Range(0, 86'400'000));
    mode->add_option("--retry-ms", s.retry_ms, "first backoff (doubles, jittered)")
        ->check(demo::integer)
        ->check(CLI::Range(1, 86'400'000));
  }
  watchdog->add_option("--renew-ms", s.renew_ms, "renewal period")
      ->check(demo::integer)
      ->check(CLI::Range(1, 86'400'000));
  return demo::run(app, argc, argv, [&] { return run_demo(s); });
}
