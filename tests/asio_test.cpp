// tests/asio_test.cpp: stampede::asio::async_get_or_compute on the embedded backend: every
// completion token, one load for sync and async callers of a key, waiters that hold no thread,
// wait timeouts as timers, cancellation of one caller and of all, errors, SWR.
#include <gtest/gtest.h>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/bind_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/io_context.hpp>
#include <asio/strand.hpp>
#include <asio/thread_pool.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <atomic>
#include <chrono>
#include <exception>
#include <fstream>
#include <future>
#include <memory>
#include <stampede/asio.hpp>
#include <stampede/stampede.hpp>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "support/instances.hpp"  // Cache<int>, Cache<std::string>: compiled once
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using stampede::asio::async_get_or_compute;
using stampede_test::eventually;
using stampede_test::Gate;
using stampede_test::OpenOnExit;

// What one asynchronous call completed with.
struct Outcome {
  std::exception_ptr error;
  int value = 0;
};

// Runs `io` on `threads` threads until it runs out of work; joins them on destruction.
class Runner {
 public:
  Runner(asio::io_context& io, int threads) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([&io] { io.run(); });
  }
  ~Runner() {
    for (auto& t : threads_) t.join();
  }
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

 private:
  std::vector<std::thread> threads_;
};

// @return the process's thread count (/proc/self/status).
int os_threads() {
  std::ifstream in("/proc/self/status");
  std::string word;
  while (in >> word) {
    if (word == "Threads:") {
      int n = 0;
      in >> n;
      return n;
    }
  }
  return -1;
}

template <class E>
bool holds(const std::exception_ptr& error) {
  if (!error) return false;
  try {
    std::rethrow_exception(error);
  } catch (const E&) {
    return true;
  } catch (...) {
    return false;
  }
}

TEST(AsioGetOrCompute, AMissLoadsAndAHitCompletesWithTheStoredValueOnTheHandlersExecutor) {
  stampede::Cache<int> cache;
  asio::io_context io;
  std::vector<Outcome> got;
  std::atomic<int> loads{0};
  std::thread::id loader_thread;
  auto on_io = [&](std::exception_ptr e, int v) {
    EXPECT_TRUE(io.get_executor().running_in_this_thread());
    got.push_back({e, v});
  };
  async_get_or_compute(
      cache, "k",
      [&] {
        loader_thread = std::this_thread::get_id();
        ++loads;
        return 7;
      },
      asio::bind_executor(io, on_io));
  io.run();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_FALSE(got[0].error);
  EXPECT_EQ(got[0].value, 7);
  EXPECT_NE(loader_thread, std::this_thread::get_id()) << "a synchronous loader never runs on the io thread";
  io.restart();
  async_get_or_compute(
      cache, "k", [&] { return ++loads, 8; }, asio::bind_executor(io, on_io));
  io.run();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].value, 7);
  EXPECT_EQ(loads.load(), 1);
  EXPECT_EQ(cache.stats().hits, 1u);
}

TEST(AsioGetOrCompute, EveryCompletionTokenWorks) {
  stampede::Cache<int> cache;
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  Runner runner(io, 1);
  // use_future
  std::future<int> f = async_get_or_compute(
      cache, "future", [] { return 1; }, asio::use_future);
  EXPECT_EQ(f.get(), 1);
  std::future<int> failed = async_get_or_compute(
      cache, "future-error", []() -> int { throw std::runtime_error("db down"); }, asio::use_future);
  EXPECT_THROW(failed.get(), std::runtime_error);
  // use_awaitable, as_tuple, deferred (in asio::experimental in Asio 1.22)
  std::promise<std::string> done;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        std::string report;
        const int a = co_await async_get_or_compute(
            cache, "awaitable", [] { return 2; }, asio::use_awaitable);
        report += std::to_string(a);
        auto [e, b] = co_await async_get_or_compute(
            cache, "tuple", [] { return 3; }, asio::experimental::as_tuple(asio::use_awaitable));
        report += e ? "!" : std::to_string(b);
        auto op = async_get_or_compute(
            cache, "deferred", [] { return 4; }, asio::experimental::deferred);
        const int c = co_await std::move(op)(asio::use_awaitable);
        report += std::to_string(c);
        try {
          (void)co_await async_get_or_compute(
              cache, "awaitable-error", []() -> int { throw std::logic_error("bad row"); },
              asio::use_awaitable);
          report += "no-throw";
        } catch (const std::logic_error& error) {
          report += std::string(":") + error.what();
        }
        done.set_value(report);
      },
      asio::detached);
  auto report = done.get_future();
  ASSERT_EQ(report.wait_for(stampede_test::kHangGuard), std::future_status::ready);
  EXPECT_EQ(report.get(), "234:bad row");
  work.reset();
}

TEST(AsioGetOrCompute, AnEmptyKeyCompletesWithInvalidArgumentAndLoadsNothing) {
  stampede::Cache<int> cache;
  bool loaded = false;
  std::future<int> f = async_get_or_compute(
      cache, "", [&] { return loaded = true, 1; }, asio::use_future);
  EXPECT_THROW(f.get(), std::invalid_argument);
  EXPECT_FALSE(loaded);
}

// 10,000 coroutines on 2 threads miss one cold key at once: one load, every caller served, and
// the waiters hold no thread: while they wait, the process has no more threads than while one
// caller of another key waited (the io threads, the Cache's blocking threads, the lock's lease
// renewer and whatever the runtime keeps are there for both).
TEST(AsioGetOrCompute, TenThousandWaitersOnTwoThreadsMakeOneLoadAndHoldNoThread) {
  constexpr int kCallers = 10'000;
  stampede::Cache<int> cache({.wait_timeout = std::chrono::milliseconds::max()});
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  Runner runner(io, 2);
  // One caller waits first: the threads a single wait needs.
  Gate one_entered, one_release;
  OpenOnExit one_release_on_exit(one_release);
  std::future<int> one = async_get_or_compute(
      cache, "warm-up",
      [&] {
        one_entered.open();
        one_release.wait();
        return 1;
      },
      asio::bind_executor(io, asio::use_future));
  ASSERT_TRUE(one_entered.wait_for());
  const int for_one = os_threads();
  Gate release;
  OpenOnExit release_on_exit(release);
  std::atomic<int> loads{0}, served{0}, errors{0};
  for (int i = 0; i < kCallers; ++i) {
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          auto load = [&] {
            ++loads;
            release.wait();
            return 42;
          };
          try {
            const int v = co_await async_get_or_compute(cache, "hot", load, asio::use_awaitable);
            if (v == 42) ++served;
          } catch (...) {
            ++errors;
          }
        },
        asio::detached);
  }
  // Every caller has joined the key's flight (a miss is counted when a caller joins).
  ASSERT_TRUE(eventually([&] { return cache.stats().misses == kCallers + 1; }));
  EXPECT_LT(os_threads() - for_one, 8) << "10,000 waiters must not cost a thread each";
  release.open();
  one_release.open();
  ASSERT_TRUE(eventually([&] { return served + errors == kCallers; }));
  EXPECT_EQ(one.get(), 1);
  EXPECT_EQ(loads.load(), 1);
  EXPECT_EQ(served.load(), kCallers);
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(cache.stats().coalesced, static_cast<std::uint64_t>(kCallers - 1));
  work.reset();
}

TEST(AsioGetOrCompute, SyncAndAsyncCallersOfOneKeyShareOneLoad) {
  stampede::Cache<int> cache({.wait_timeout = 60s});
  Gate entered, release;
  OpenOnExit release_on_exit(release);
  std::atomic<int> loads{0};
  auto load = [&] {
    ++loads;
    entered.open();
    release.wait();
    return 5;
  };
  // A synchronous caller leads.
  auto sync_caller = std::async(std::launch::async, [&] { return cache.get_or_compute("k", load); });
  ASSERT_TRUE(entered.wait_for());
  asio::io_context io;
  std::vector<Outcome> got;
  for (int i = 0; i < 3; ++i) {
    async_get_or_compute(cache, "k", load, asio::bind_executor(io, [&](std::exception_ptr e, int v) {
                           got.push_back({e, v});
                         }));
  }
  std::thread io_thread([&] {
    auto work = asio::make_work_guard(io);
    io.run_for(stampede_test::kHangGuard);
  });
  ASSERT_TRUE(eventually([&] { return cache.stats().misses == 4; }));
  // And a synchronous caller that joins after the async ones.
  auto late_sync = std::async(std::launch::async, [&] { return cache.get_or_compute("k", load); });
  ASSERT_TRUE(eventually([&] { return cache.stats().misses == 5; }));
  release.open();
  EXPECT_EQ(sync_caller.get(), 5);
  EXPECT_EQ(late_sync.get(), 5);
  ASSERT_TRUE(eventually([&] {
    std::promise<std::size_t> n;
    asio::post(io, [&] { n.set_value(got.size()); });
    return n.get_future().get() == 3;
  }));
  io.stop();
  io_thread.join();
  for (const Outcome& o : got) {
    EXPECT_FALSE(o.error);
    EXPECT_EQ(o.value, 5);
  }
  EXPECT_EQ(loads.load(), 1);
}

// An async caller that leads while sync callers wait: they get its value.
TEST(AsioGetOrCompute, AnAsyncLeadersValueReachesSyncWaiters) {
  stampede::Cache<int> cache({.wait_timeout = 60s});
  Gate entered, release;
  OpenOnExit release_on_exit(release);
  std::atomic<int> loads{0};
  auto load = [&] {
    ++loads;
    entered.open();
    release.wait();
    return 9;
  };
  std::future<int> async_leader = async_get_or_compute(cache, "k", load, asio::use_future);
  ASSERT_TRUE(entered.wait_for());
  auto sync_waiter = std::async(std::launch::async, [&] { return cache.get_or_compute("k", load); });
  ASSERT_TRUE(eventually([&] { return cache.stats().misses == 2; }));
  release.open();
  EXPECT_EQ(async_leader.get(), 9);
  EXPECT_EQ(sync_waiter.get(), 9);
  EXPECT_EQ(loads.load(), 1);
}

TEST(AsioGetOrCompute, ALoadersExceptionReachesEveryAsyncCaller) {
  stampede::Cache<int> cache({.wait_timeout = 60s});
  Gate entered, release;
  OpenOnExit release_on_exit(release);
  std::atomic<int> loads{0};
  auto load = [&]() -> int {
    ++loads;
    entered.open();
    release.wait();
    throw std::runtime_error("db down");
  };
  std::vector<std::future<int>> calls;
  calls.push_back(async_get_or_compute(cache, "k", load, asio::use_future));
  ASSERT_TRUE(entered.wait_for());
  for (int i = 0; i < 5; ++i) calls.push_back(async_get_or_compute(cache, "k", load, asio::use_future));
  ASSERT_TRUE(eventually([&] { return cache.stats().misses == 6; }));
  release.open();
  for (auto& c : calls) {
    try {
      c.get();
      ADD_FAILURE() << "no exception";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "db down");
    }
  }
  EXPECT_EQ(loads.load(), 1);
}

// A cancellation_signal bound to one waiter: that caller gets cancelled_error at once, the others
// keep waiting and get the value, the load runs once.
TEST(AsioGetOrCompute, CancellingOneWaiterLeavesTheOthersWaiting) {
  stampede::Cache<int> cache({.wait_timeout = 60s});
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  Runner runner(io, 1);
  Gate entered, release;
  OpenOnExit release_on_exit(release);
  std::atomic<int> loads{0};
  auto load = [&] {
    ++loads;
    entered.open();
    release.wait();
    return 3;
  };
  std::future<int> leader = async_get_or_compute(cache, "k", load, asio::bind_executor(io, asio::use_future));
  ASSERT_TRUE(entered.wait_for());
  asio::cancellation_signal signal;
  std::promise<Outcome> cancelled;
  async_get_or_compute(
      cache, "k", load,
      asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(io, [&](std::exception_ptr e, int v) {
                                     cancelled.set_value({e, v});
                                   })));
  std::future<int> other = async_get_or_compute(cache, "k", load, asio::bind_executor(io, asio::use_future));
  ASSERT_TRUE(eventually([&] { return cache.stats().misses == 3; }));
  asio::post(io, [&] { signal.emit(asio::cancellation_type::terminal); });
  auto c = cancelled.get_future();
  ASSERT_EQ(c.wait_for(stampede_test::kHangGuard), std::future_status::ready);
  EXPECT_TRUE(holds<stampede::cancelled_error>(c.get().error));
  EXPECT_EQ(other.wait_for(0s), std::future_status::timeout) << "the other caller still waits";
  release.open();
  EXPECT_EQ(leader.get(), 3);
  EXPECT_EQ(other.get(), 3);
  EXPECT_EQ(loads.load(), 1);
  EXPECT_EQ(cache.get("k"), 3) << "the load went on and was stored";
  work.reset();
}

// Every caller gives up (the leader and the waiters, through CallOptions::stop and a slot): the
// loader's stop token is requested; a later caller starts a new load.
TEST(AsioGetOrCompute, WhenEveryCallerGivesUpTheLoadersStopTokenIsRequested) {
  stampede::Cache<int> cache({.wait_timeout = 60s});
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  Runner runner(io, 1);
  Gate entered;
  std::atomic<bool> saw_stop{false};
  auto load = [&](stampede::LoadContext& ctx) {
    entered.open();
    saw_stop = eventually([&] { return ctx.stop_token().stop_requested(); });
    return 1;
  };
  std::stop_source leader_stop;
  std::future<int> leader = async_get_or_compute(cache, "k", load, {.stop = leader_stop.get_token()},
                                                 asio::bind_executor(io, asio::use_future));
  ASSERT_TRUE(entered.wait_for());
  asio::cancellation_signal signal;
  std::future<int> waiter = async_get_or_compute(
      cache, "k", load,
      asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(io, asio::use_future)));
  ASSERT_TRUE(eventually([&] { return cache.stats().misses == 2; }));
  leader_stop.request_stop();
  EXPECT_THROW(leader.get(), stampede::cancelled_error);
  asio::post(io, [&] { signal.emit(asio::cancellation_type::terminal); });
  EXPECT_THROW(waiter.get(), stampede::cancelled_error);
  cache.wait_idle();
  ASSERT_TRUE(eventually([&] { return saw_stop.load(); }));
  work.reset();
}

// wait_timeout is a timer: with throw_error, a waiter whose leader outlasts it gets timeout_error
// while the load still runs.
TEST(AsioGetOrCompute, AWaiterPastItsWaitTimeoutGetsTimeoutError) {
  stampede::Cache<int> cache({.wait_timeout = 20ms, .on_wait_timeout = stampede::OnWaitTimeout::throw_error});
  Gate entered, release;
  OpenOnExit release_on_exit(release);
  auto load = [&] {
    entered.open();
    release.wait();
    return 1;
  };
  std::future<int> leader = async_get_or_compute(cache, "k", load, {.wait_timeout = 60s}, asio::use_future);
  ASSERT_TRUE(entered.wait_for());
  std::future<int> waiter = async_get_or_compute(cache, "k", load, asio::use_future);
  EXPECT_THROW(waiter.get(), stampede::timeout_error);  // returns while the leader is held
  EXPECT_EQ(cache.stats().wait_timeouts, 1u);
  release.open();
  EXPECT_EQ(leader.get(), 1);
}

// OnWaitTimeout::compute: the async waiters that gave up share one fallback load.
TEST(AsioGetOrCompute, WaitersThatGiveUpShareOneFallbackLoad) {
  stampede::Cache<int> cache({.wait_timeout = 20ms, .on_wait_timeout = stampede::OnWaitTimeout::compute});
  Gate entered, release, fallback_entered, fallback_release;
  OpenOnExit release_on_exit(release);
  OpenOnExit fallback_release_on_exit(fallback_release);
  std::atomic<int> fallbacks{0};
  std::future<int> leader = async_get_or_compute(
      cache, "k",
      [&] {
        entered.open();
        release.wait();
        return 1;
      },
      {.wait_timeout = 60s}, asio::use_future);
  ASSERT_TRUE(entered.wait_for());
  auto fallback_load = [&] {
    ++fallbacks;
    fallback_entered.open();
    fallback_release.wait();
    return 2;
  };
  std::vector<std::future<int>> waiters;
  waiters.push_back(async_get_or_compute(cache, "k", fallback_load, asio::use_future));
  ASSERT_TRUE(fallback_entered.wait_for());
  for (int i = 0; i < 4; ++i)
    waiters.push_back(async_get_or_compute(cache, "k", fallback_load, asio::use_future));
  ASSERT_TRUE(eventually([&] { return cache.stats().wait_timeouts == 5; }));
  fallback_release.open();
  for (auto& w : waiters) EXPECT_EQ(w.get(), 2);
  EXPECT_EQ(fallbacks.load(), 1);
  release.open();
  EXPECT_EQ(leader.get(), 1);
}

// A stale hit in SWR mode completes at once and schedules one background refresh.
TEST(AsioGetOrCompute, AStaleHitCompletesAtOnceAndRefreshesInTheBackground) {
  auto clock = std::make_shared<stampede::ManualClock>(std::chrono::system_clock::now());
  stampede::Cache<int> cache(
      {.mode = stampede::Mode::stale_while_revalidate, .soft_ttl = 1s, .swr_window = 60s, .clock = clock});
  cache.put("k", 1);
  clock->advance(2s);
  Gate release;
  OpenOnExit release_on_exit(release);
  std::future<int> f = async_get_or_compute(
      cache, "k",
      [&] {
        release.wait();
        return 2;
      },
      asio::use_future);
  EXPECT_EQ(f.get(), 1);  // while the refresh is held
  release.open();
  cache.wait_idle();
  EXPECT_EQ(cache.get("k"), 2);
  EXPECT_EQ(cache.stats().stale_hits, 1u);
}

// A strand as the handler's executor: completions run on it.
TEST(AsioGetOrCompute, CompletionsRunOnTheHandlersStrand) {
  stampede::Cache<int> cache({.wait_timeout = 60s});
  asio::io_context io;
  auto strand = asio::make_strand(io);
  Gate entered, release;
  OpenOnExit release_on_exit(release);
  auto load = [&] {
    entered.open();
    release.wait();
    return 4;
  };
  std::atomic<int> on_strand{0}, done{0};
  auto handler = asio::bind_executor(strand, [&](std::exception_ptr, int) {
    if (strand.running_in_this_thread()) ++on_strand;
    ++done;
  });
  for (int i = 0; i < 8; ++i) async_get_or_compute(cache, "k", load, handler);
  {
    auto work = asio::make_work_guard(io);
    Runner runner(io, 2);
    ASSERT_TRUE(entered.wait_for());
    ASSERT_TRUE(eventually([&] { return cache.stats().misses == 8; }));
    release.open();
    ASSERT_TRUE(eventually([&] { return done.load() == 8; }));
    work.reset();
  }
  EXPECT_EQ(on_strand.load(), 8);
}

// Destroying the Cache with calls pending (a leader in its loader, waiters attached to its
// flight) completes each of them with stampede::error, and the destructor returns once the
// loader saw its stop token.
TEST(AsioGetOrCompute, DestroyingTheCacheCompletesEveryPendingCall) {
  auto cache = std::make_unique<stampede::Cache<int>>(stampede::CacheOptions{.wait_timeout = 60s});
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  Runner runner(io, 1);
  Gate entered;
  std::atomic<bool> saw_stop{false};
  auto load = [&](stampede::LoadContext& ctx) {
    entered.open();
    saw_stop = eventually([&] { return ctx.stop_token().stop_requested(); });
    return 1;
  };
  std::vector<std::future<int>> calls;
  calls.push_back(async_get_or_compute(*cache, "k", load, asio::bind_executor(io, asio::use_future)));
  ASSERT_TRUE(entered.wait_for());
  for (int i = 0; i < 3; ++i) {
    calls.push_back(async_get_or_compute(*cache, "k", load, asio::bind_executor(io, asio::use_future)));
  }
  ASSERT_TRUE(eventually([&] { return cache->stats().misses == 4; }));
  cache.reset();
  EXPECT_TRUE(saw_stop.load());
  for (auto& c : calls) {
    try {
      (void)c.get();
      ADD_FAILURE() << "completed with a value";
    } catch (const stampede::error& e) {
      EXPECT_TRUE(stampede_test::mentions_word(e.what(), "destroyed")) << e.what();
    }
  }
  work.reset();
}

}  // namespace
