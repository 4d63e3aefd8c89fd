// Tests of detail::ReadMostlyMutex and the per-thread stripes under it.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <latch>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "stampede/detail/counters.hpp"
#include "stampede/detail/read_mostly_mutex.hpp"

namespace {

using stampede::detail::ReadMostlyMutex;

// Two plain fields that a writer keeps equal under the exclusive lock; a reader that ever sees
// them differ under the shared lock has seen a torn write, i.e. the lock let it in too early.
struct Guarded {
  std::uint64_t a = 0;
  std::uint64_t b = 0;
};

void run_readers_against_writer(int readers) {
  ReadMostlyMutex mu;
  Guarded g;
  constexpr int kWrites = 2000;
  constexpr int kReadsPerReader = 20000;
  std::atomic<int> torn{0};
  std::latch start(readers + 1);
  std::vector<std::thread> threads;
  for (int r = 0; r < readers; ++r) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      for (int i = 0; i < kReadsPerReader; ++i) {
        std::shared_lock lock(mu);
        if (g.a != g.b) torn.fetch_add(1);
      }
    });
  }
  threads.emplace_back([&] {
    start.arrive_and_wait();
    for (int i = 0; i < kWrites; ++i) {
      std::unique_lock lock(mu);
      ++g.a;
      std::atomic_signal_fence(std::memory_order_seq_cst);  // keep the two writes apart
      ++g.b;
    }
  });
  for (auto& t : threads) t.join();
  EXPECT_EQ(torn.load(), 0);
  EXPECT_EQ(g.a, static_cast<std::uint64_t>(kWrites));
  EXPECT_EQ(g.b, static_cast<std::uint64_t>(kWrites));
}

TEST(ReadMostlyMutex, ReadersNeverSeeAHalfDoneWrite) { run_readers_against_writer(4); }

// More readers than exclusive stripes: the overflow stripe's read-modify-write path runs too.
TEST(ReadMostlyMutex, ReadersBeyondTheExclusiveStripesAreStillExcluded) {
  run_readers_against_writer(static_cast<int>(stampede::detail::kExclusiveStripes) + 4);
}

TEST(ReadMostlyMutex, WritersExcludeEachOther) {
  ReadMostlyMutex mu;
  std::uint64_t n = 0;
  constexpr int kThreads = 4, kIncrements = 5000;
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      for (int i = 0; i < kIncrements; ++i) {
        std::unique_lock lock(mu);
        ++n;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(n, static_cast<std::uint64_t>(kThreads * kIncrements));
}

TEST(ThreadStripes, LiveThreadsGetDistinctExclusiveStripesThenShareTheOverflow) {
  constexpr std::size_t kThreads = stampede::detail::kExclusiveStripes + 3;
  std::vector<stampede::detail::StripeSlot> slots(kThreads);
  std::latch claimed(kThreads);
  std::latch done(1);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      slots[i] = stampede::detail::this_thread_stripe();
      claimed.count_down();
      done.wait();  // stay alive so nobody gives a stripe back
    });
  }
  claimed.wait();
  std::set<std::size_t> exclusive;
  std::size_t shared = 0;
  for (const auto& s : slots) {
    if (s.exclusive) {
      EXPECT_TRUE(exclusive.insert(s.index).second) << "stripe " << s.index << " owned twice";
      EXPECT_LT(s.index, stampede::detail::kExclusiveStripes);
    } else {
      EXPECT_EQ(s.index, stampede::detail::kStripes - 1);
      ++shared;
    }
  }
  // This test thread (and gtest's) may hold exclusive stripes too, so at least 3 share.
  EXPECT_GE(shared, 3u);
  done.count_down();
  for (auto& t : threads) t.join();
}

TEST(StripedCounters, CountsEveryIncrementFromManyThreads) {
  stampede::detail::StripedCounters<2> counters;
  constexpr int kThreads = static_cast<int>(stampede::detail::kExclusiveStripes) + 8;
  constexpr int kIncrements = 10000;
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      for (int i = 0; i < kIncrements; ++i) counters.add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(counters.sum(1), static_cast<std::uint64_t>(kThreads) * kIncrements);
  EXPECT_EQ(counters.sum(0), 0u);
}

}  // namespace
