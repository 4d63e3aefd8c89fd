// Refresher: one task per key, a bounded queue, stop() that drops queued tasks and waits for
// running ones.
#include "stampede/detail/refresher.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <future>
#include <latch>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "support/test_support.hpp"

namespace {

using stampede::detail::Refresher;
using Submit = stampede::detail::Refresher::Submit;

TEST(RefresherTest, AKeyQueuedOrRunningIsNotQueuedAgain) {
  Refresher r({.threads = 1, .queue = 8});
  stampede_test::Gate release;
  std::latch running(1);
  std::atomic<int> runs_a{0};
  std::atomic<int> runs_b{0};
  stampede_test::OpenOnExit open_on_exit(release);
  ASSERT_EQ(r.submit("a",
                     [&] {
                       runs_a.fetch_add(1);
                       running.count_down();
                       release.wait();
                     }),
            Submit::queued);
  running.wait();
  EXPECT_EQ(r.submit("a", [&] { runs_a.fetch_add(1); }), Submit::duplicate) << "while running";
  EXPECT_EQ(r.submit("b", [&] { runs_b.fetch_add(1); }), Submit::queued);
  EXPECT_EQ(r.submit("b", [&] { runs_b.fetch_add(1); }), Submit::duplicate) << "while queued";
  release.open();
  r.wait_idle();
  EXPECT_EQ(runs_a.load(), 1);
  EXPECT_EQ(runs_b.load(), 1);
  // Done: the key can be queued again.
  EXPECT_EQ(r.submit("a", [&] { runs_a.fetch_add(1); }), Submit::queued);
  r.wait_idle();
  EXPECT_EQ(runs_a.load(), 2);
}

TEST(RefresherTest, TasksBeyondTheQueueBoundAreDropped) {
  Refresher r({.threads = 1, .queue = 2});
  stampede_test::Gate release;
  std::latch running(1);
  std::atomic<int> runs{0};
  stampede_test::OpenOnExit open_on_exit(release);
  ASSERT_EQ(r.submit("running",
                     [&] {
                       running.count_down();
                       release.wait();
                     }),
            Submit::queued);
  running.wait();  // the running task does not count against the queue
  EXPECT_EQ(r.submit("q1", [&] { runs.fetch_add(1); }), Submit::queued);
  EXPECT_EQ(r.submit("q2", [&] { runs.fetch_add(1); }), Submit::queued);
  EXPECT_EQ(r.submit("q3", [&] { runs.fetch_add(1); }), Submit::dropped);
  release.open();
  r.wait_idle();
  EXPECT_EQ(runs.load(), 2);
  EXPECT_EQ(r.submit("q3", [&] { runs.fetch_add(1); }), Submit::queued) << "a dropped key is not remembered";
  r.wait_idle();
  EXPECT_EQ(runs.load(), 3);
}

TEST(RefresherTest, StopDropsQueuedTasksAndWaitsForRunningOnes) {
  Refresher r({.threads = 1, .queue = 8});
  stampede_test::Gate release;
  std::latch running(1);
  std::atomic<bool> running_done{false};
  std::atomic<int> queued_runs{0};
  stampede_test::OpenOnExit open_on_exit(release);
  ASSERT_EQ(r.submit("running",
                     [&] {
                       running.count_down();
                       release.wait();
                       running_done.store(true);
                     }),
            Submit::queued);
  running.wait();
  ASSERT_EQ(r.submit("queued", [&] { queued_runs.fetch_add(1); }), Submit::queued);

  bool done_when_stop_returned = false;
  std::thread stopper([&] {
    r.stop();
    done_when_stop_returned = running_done.load();
  });
  // stop() has begun once submit() reports it; the running task is still blocked then.
  ASSERT_TRUE(stampede_test::eventually([&] { return r.submit("probe", [] {}) == Submit::stopped; }));
  EXPECT_FALSE(running_done.load());
  release.open();
  stopper.join();
  EXPECT_TRUE(done_when_stop_returned) << "stop() returned before the running task finished";
  EXPECT_EQ(queued_runs.load(), 0) << "a queued task ran after stop()";
  EXPECT_EQ(r.submit("late", [] {}), Submit::stopped);
  r.stop();       // idempotent
  r.wait_idle();  // returns at once after stop
}

// What a Cache's background loads use: a task that would wait behind other keys' tasks is refused,
// so that its caller runs it at once instead.
TEST(RefresherTest, IdleOnlyTakesATaskOnlyWhileAThreadIsFreeToRunIt) {
  Refresher r({.threads = 2, .queue = 2, .idle_only = true});
  stampede_test::Gate release;
  std::latch running(2);
  auto blocked = [&] {
    running.count_down();
    release.wait();
  };
  stampede_test::OpenOnExit unblock(release);
  ASSERT_EQ(r.submit("a", blocked), Submit::queued);
  ASSERT_EQ(r.submit("b", blocked), Submit::queued);  // the second thread is still free
  running.wait();
  EXPECT_EQ(r.submit("c", [] {}), Submit::dropped) << "queued behind two running tasks";
  release.open();
  r.wait_idle();
  EXPECT_EQ(r.submit("c", [] {}), Submit::queued);
}

TEST(RefresherTest, ThreadsRunTasksInParallel) {
  Refresher r({.threads = 2, .queue = 8});
  std::barrier meet(2);  // each task waits for the other: completes only if both run at once
  std::atomic<int> done{0};
  ASSERT_EQ(r.submit("a",
                     [&] {
                       meet.arrive_and_wait();
                       done.fetch_add(1);
                     }),
            Submit::queued);
  ASSERT_EQ(r.submit("b",
                     [&] {
                       meet.arrive_and_wait();
                       done.fetch_add(1);
                     }),
            Submit::queued);
  r.wait_idle();
  EXPECT_EQ(done.load(), 2);
}

TEST(RefresherTest, AThrowingTaskDoesNotStopTheWorker) {
  Refresher r({.threads = 1, .queue = 8});
  std::atomic<int> runs{0};
  ASSERT_EQ(r.submit("bad", [] { throw std::runtime_error("refresh failed"); }), Submit::queued);
  r.wait_idle();
  ASSERT_EQ(r.submit("bad", [&] { runs.fetch_add(1); }), Submit::queued) << "the failed key stayed pending";
  ASSERT_EQ(r.submit("good", [&] { runs.fetch_add(1); }), Submit::queued);
  r.wait_idle();
  EXPECT_EQ(runs.load(), 2);
}

TEST(RefresherTest, ProbablyPendingIsTrueOnlyWhileTheKeyIsPending) {
  Refresher r({.threads = 1, .queue = 8});
  stampede_test::Gate release;
  std::latch running(1);
  stampede_test::OpenOnExit open_on_exit(release);
  EXPECT_FALSE(r.probably_pending("a"));
  ASSERT_EQ(r.submit("a",
                     [&] {
                       running.count_down();
                       release.wait();
                     }),
            Submit::queued);
  running.wait();
  EXPECT_TRUE(r.probably_pending("a"));
  EXPECT_FALSE(r.probably_pending("b"));
  release.open();
  r.wait_idle();
  EXPECT_FALSE(r.probably_pending("a"))
      << "a finished key still looks pending: its refreshes would be skipped";
}

TEST(RefresherTest, BadOptionsThrowInvalidArgument) {
  EXPECT_THROW(Refresher({.threads = 0, .queue = 1}), std::invalid_argument);
  EXPECT_THROW(Refresher({.threads = 1, .queue = 0}), std::invalid_argument);
}

TEST(RefresherTest, DestructorWithoutAnySubmitStartsAndJoinsNothing) {
  Refresher r({.threads = 4, .queue = 1});
  r.wait_idle();  // nothing queued or running
  SUCCEED();
}

// A task may end the Refresher that runs it (its owner's last reference can go with the task):
// stop() then detaches the calling worker instead of joining it, and the worker no longer touches
// the Refresher object.

TEST(RefresherTest, StopFromInsideATaskDetachesThatWorker) {
  Refresher r({.threads = 2, .queue = 8});
  auto stopped = std::make_shared<std::promise<Submit>>();
  std::future<Submit> result = stopped->get_future();
  ASSERT_EQ(r.submit("stopper",
                     [&r, stopped] {
                       r.stop();
                       stopped->set_value(r.submit("after", [] {}));
                     }),
            Submit::queued);
  ASSERT_EQ(result.wait_for(stampede_test::kHangGuard), std::future_status::ready) << "stop() never returned";
  EXPECT_EQ(result.get(), Submit::stopped);
  r.wait_idle();  // returns at once after stop
}

TEST(RefresherTest, DestroyingTheRefresherFromInsideATask) {
  auto r =
      std::make_shared<std::unique_ptr<Refresher>>(std::make_unique<Refresher>(Refresher::Options{2, 8}));
  auto destroyed = std::make_shared<std::promise<void>>();
  std::future<void> done = destroyed->get_future();
  std::atomic<int> other_runs{0};
  stampede_test::Gate release_other;
  std::latch other_running(1);
  stampede_test::OpenOnExit open_on_exit(release_other);
  // A task on the other thread is running: the destroying task's stop() waits for it.
  ASSERT_EQ((*r)->submit("other",
                         [&] {
                           other_running.count_down();
                           release_other.wait();
                           other_runs.fetch_add(1);
                         }),
            Submit::queued);
  other_running.wait();
  auto go = std::make_shared<stampede_test::Gate>();  // opened once submit() has returned
  ASSERT_EQ((*r)->submit("destroyer",
                         [r, destroyed, go] {
                           (void)go->wait_for();
                           r->reset();  // ~Refresher on its own worker thread
                           destroyed->set_value();
                         }),
            Submit::queued);
  go->open();
  release_other.open();
  ASSERT_EQ(done.wait_for(stampede_test::kHangGuard), std::future_status::ready)
      << "the Refresher destroyed from its own task never finished";
  EXPECT_EQ(other_runs.load(), 1) << "the running task was not waited for";
}

}  // namespace
