// benchmarks/bm_wave_async.cpp: DB hits under concurrent misses from coroutines
// (stampede::asio::async_get_or_compute), beside the thread waves of bm_waves.cpp.
//
// A wave spawns N coroutines (asio::co_spawn, one burst from the benchmark thread) on an
// asio::io_context run by 2 threads; each calls async_get_or_compute(cache, key, loader,
// asio::use_awaitable) on one fresh cold key. The loader is wave.hpp's SimulatedDb (sleeps D ms,
// counts its hits); like any synchronous loader it runs on one of the Cache's blocking threads.
// The waiters hold no thread: each is a continuation that the leader's publish posts back to the
// io_context. The io_context, its 2 threads and the Cache (default options, as stampede_blocking)
// live for the whole benchmark; each wave has a key of its own. One benchmark iteration is one
// wave; its manual time is the wave's wall time (the first spawn to the last coroutine's return).
//
//   BM_Wave_async/N:{64,1024,10000}/D_ms:{5,50}   Profile::waves waves each (smoke: 1)
//
// Counters: wave.hpp's (db_hits, db_hits_max, coalesced, errors, lat_*, wake_*, leader_tail_*),
// computed the same way; a caller's return is the coroutine's resumption after its co_await, so
// wake_* runs from the latest loader return before that resumption to the resumption.
#include <algorithm>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/use_awaitable.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <iterator>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "stampede/asio.hpp"
#include "stampede/stampede.hpp"
#include "wave.hpp"

namespace stampede::bench {
namespace {

constexpr int kIoThreads = 2;

/// What one coroutine of a wave saw. Written by its coroutine (and, for the leader, by its loader
/// before the load is published), read by the benchmark thread once the wave is over.
/// One caller: records its start, awaits the value, records its resumption, then counts itself
/// out of the wave (`remaining` reaching 0 wakes the benchmark thread).
::asio::awaitable<void> wave_caller(Cache<std::string>& cache, std::string key, SimulatedDb& db,
                                    WaveSlot& slot, std::atomic<int>& remaining) {
  // A named local, not a temporary in the co_await expression: GCC 12 destroys a capturing lambda
  // temporary of a co_await expression twice (here a std::string capture: a double free).
  auto loader = [&db, &slot, key] {
    slot.loaded = true;
    std::string value = db.load(key);
    slot.loader_return = t_loader_return;  // set by db.load() on this (blocking) thread
    return value;
  };
  slot.start = now_ns();
  try {
    std::string v = co_await stampede::asio::async_get_or_compute(cache, key, loader, ::asio::use_awaitable);
    slot.end = now_ns();
    benchmark::DoNotOptimize(v);
  } catch (const std::exception&) {
    slot.end = now_ns();
    slot.failed = true;
  }
  if (remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) remaining.notify_one();
}

void BM_Wave_async(benchmark::State& state) {
  const auto n = static_cast<int>(state.range(0));
  SimulatedDb db{std::chrono::milliseconds(state.range(1))};
  Cache<std::string> cache;  // default options: the out-of-the-box behaviour
  ::asio::io_context io(kIoThreads);
  auto work = ::asio::make_work_guard(io);
  std::vector<std::thread> io_threads;
  for (int i = 0; i < kIoThreads; ++i) io_threads.emplace_back([&io] { io.run(); });

  std::vector<WaveSlot> slots(static_cast<std::size_t>(n));
  std::atomic<int> remaining{0};
  WaveTally tally;
  int wave = 0;
  for (auto _ : state) {
    const std::string key = "wave:" + std::to_string(wave++);
    db.reset();
    for (WaveSlot& s : slots) s = WaveSlot{};
    remaining.store(n, std::memory_order_relaxed);
    const std::int64_t released = now_ns();
    for (WaveSlot& s : slots)
      ::asio::co_spawn(io, wave_caller(cache, key, db, s, remaining), ::asio::detached);
    for (int left = remaining.load(std::memory_order_acquire); left != 0;
         left = remaining.load(std::memory_order_acquire)) {
      remaining.wait(left, std::memory_order_acquire);
    }
    const std::int64_t finished = now_ns();
    state.SetIterationTime(static_cast<double>(finished - released) * 1e-9);

    tally.add(db, slots, /*waits=*/true);
  }
  work.reset();
  for (std::thread& t : io_threads) t.join();  // run() returns once every call's last step has run

  state.counters["N"] = n;
  state.counters["io_threads"] = kIoThreads;
  tally.report(state);
}

}  // namespace

void register_wave_async_benchmarks(const Profile& p) {
  for (int d : {5, 50}) {
    for (int n : {64, 1024, 10'000}) {
      benchmark::RegisterBenchmark("BM_Wave_async", BM_Wave_async)
          ->Args({n, d})
          ->ArgNames({"N", "D_ms"})
          ->Iterations(p.waves)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
}

}  // namespace stampede::bench
