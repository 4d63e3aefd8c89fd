// Tests of detail::ReadMostlyMutex and the per-thread stripes under it.
#include "stampede/detail/read_mostly_mutex.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <latch>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "stampede/detail/sanitizers.hpp"
#include "stampede/detail/striped_counters.hpp"
#include "support/test_support.hpp"

namespace {

using stampede::detail::ReadMostlyMutex;

// Two plain fields that a writer keeps equal under the exclusive lock; a reader that ever sees
// them differ under the shared lock has seen a torn write, i.e. the lock let it in too early.
struct Guarded {
  std::uint64_t a = 0;
  std::uint64_t b = 0;
};

struct Outcome {
  int torn = 0;
  std::uint64_t a = 0, b = 0;
};

Outcome readers_against_writer(int readers) {
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
  return {torn.load(), g.a, g.b};
}

constexpr std::uint64_t kWritesDone = 2000;

void run_readers_against_writer(int readers) {
  const Outcome o = readers_against_writer(readers);
  EXPECT_EQ(o.torn, 0);
  EXPECT_EQ(o.a, kWritesDone);
  EXPECT_EQ(o.b, kWritesDone);
}

TEST(ReadMostlyMutex, ReadersNeverSeeAHalfDoneWrite) { run_readers_against_writer(4); }

// More readers than exclusive stripes: the overflow stripe's read-modify-write path runs too.
TEST(ReadMostlyMutex, ReadersBeyondTheExclusiveStripesAreStillExcluded) {
  run_readers_against_writer(static_cast<int>(stampede::detail::kExclusiveStripes) + 4);
}

// A fork()ed child starts new reader and writer threads: the writer's fence still excludes them
// (asymmetric_fence.hpp: the child keeps the parent's membarrier registration).
TEST(ReadMostlyMutex, ReadersInAForkedChildNeverSeeAHalfDoneWrite) {
#ifdef STAMPEDE_TSAN
  GTEST_SKIP() << "ThreadSanitizer does not support starting threads after a multi-threaded fork()";
#endif
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const Outcome o = readers_against_writer(4);
    ::_exit(o.torn == 0 && o.a == kWritesDone && o.b == kWritesDone ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "a reader in the child saw a torn write";
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

// ---- thread exit --------------------------------------------------------------------------------

// What the thread_local destructors of the exiting thread below use. Owned by the test.
struct ExitScenario {
  ReadMostlyMutex mu;
  stampede::detail::StripedCounters<1> counters;
  std::atomic<std::uint64_t> increments{0};
  std::atomic<bool> other_done{false};
  stampede_test::Gate exiting_uses_it;  // opened by the destructor that runs after the release
};

// Read-locks and counts until the other thread is done (or a bounded number of rounds).
void hammer_until_other_done(ExitScenario& s) {
  std::uint64_t n = 0;
  for (; n < 50'000'000 && !s.other_done.load(std::memory_order_relaxed); ++n) {
    std::shared_lock lock(s.mu);
    s.counters.add(0);
  }
  s.increments.fetch_add(n);
}

// A thread_local whose destructor uses the mutex and the counters of `scenario`, if set.
struct UsesOnExit {
  ExitScenario* scenario = nullptr;
  bool after_release = false;
  ~UsesOnExit() {
    if (scenario == nullptr) return;
    if (after_release) {
      scenario->exiting_uses_it.open();
      hammer_until_other_done(*scenario);
    } else {
      for (int i = 0; i < 1000; ++i) {
        std::shared_lock lock(scenario->mu);
        scenario->counters.add(0);
      }
      scenario->increments.fetch_add(1000);
    }
  }
};

// A thread_local constructed before the thread's first use of a stripe is destroyed after the
// thread gave its stripe back. If its destructor then still used that stripe as its own, it would
// race (plain stores) with the stripe's next owner: a lost reader count makes every later writer
// spin forever, a lost counter increment makes the sum wrong.
TEST(ThreadStripes, ThreadLocalDestructorsUseNoStripeTheThreadGaveBack) {
  auto s = std::make_shared<ExitScenario>();
  std::promise<std::size_t> exiting_stripe;
  std::latch fillers_ready(1);
  std::jthread exiting([&, s] {
    thread_local UsesOnExit before;  // constructed before the first use of a stripe
    before.scenario = s.get();
    before.after_release = true;
    const stampede::detail::StripeSlot slot = stampede::detail::this_thread_stripe();
    { std::shared_lock lock(s->mu); }
    thread_local UsesOnExit after;  // constructed after it: destroyed while the stripe is owned
    after.scenario = s.get();
    exiting_stripe.set_value(slot.exclusive ? slot.index : stampede::detail::kStripes);
    fillers_ready.wait();
  });
  const std::size_t index = exiting_stripe.get_future().get();
  if (index == stampede::detail::kStripes) {
    fillers_ready.count_down();
    GTEST_SKIP() << "every exclusive stripe is taken by other live threads";
  }
  // Take every other free exclusive stripe, so the exiting thread's is the only one to reuse.
  std::latch done(1);
  std::vector<std::jthread> fillers;
  for (;;) {
    std::promise<bool> got;
    auto exclusive = got.get_future();
    fillers.emplace_back([&] {
      got.set_value(stampede::detail::this_thread_stripe().exclusive);
      done.wait();
    });
    if (!exclusive.get()) break;
    ASSERT_LE(fillers.size(), stampede::detail::kExclusiveStripes);
  }
  fillers_ready.count_down();  // the exiting thread returns: its thread_locals are destroyed
  ASSERT_TRUE(s->exiting_uses_it.wait_for());
  // The exiting thread is past its release: this thread gets the stripe it gave back.
  std::jthread next([&, s] {
    const stampede::detail::StripeSlot slot = stampede::detail::this_thread_stripe();
    EXPECT_TRUE(slot.exclusive);
    EXPECT_EQ(slot.index, index) << "not the stripe the exiting thread gave back";
    std::uint64_t n = 0;
    for (; n < 2'000'000; ++n) {
      std::shared_lock lock(s->mu);
      s->counters.add(0);
    }
    s->increments.fetch_add(n);
    s->other_done.store(true);
  });
  next.join();
  exiting.join();
  done.count_down();
  fillers.clear();

  // A writer must get in: with a reader count lost it would spin forever (hang-guarded).
  auto got_in = std::make_shared<std::promise<void>>();
  auto writer = got_in->get_future();
  std::thread([s, got_in] {
    std::unique_lock lock(s->mu);
    got_in->set_value();
  }).detach();  // if it spins forever it is left behind, holding its own copies; the test fails
  ASSERT_EQ(writer.wait_for(stampede_test::kHangGuard), std::future_status::ready)
      << "a writer waited for a reader count that never drained";
  EXPECT_EQ(s->counters.sum(0), s->increments.load()) << "increments lost on a shared stripe";
}

}  // namespace
