// tests/flight_test.cpp: Flight<T>'s waiters that hold no thread (Flight<T>::Continuation): each is
// called once when the flight publishes (value, error or abandon), never after it was detached;
// attach() after a publish says so; a load limit is announced to the attached ones; sync waiters
// and continuations of one flight see one result.
#include "stampede/detail/flight.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <thread>
#include <vector>

#include "support/test_support.hpp"

namespace {

using Flight = stampede::detail::Flight<int>;

struct Recorder final : Flight::Continuation {
  std::atomic<int> published_calls{0};
  std::atomic<int> limit_calls{0};
  void published() noexcept override { ++published_calls; }
  void limit_set() noexcept override { ++limit_calls; }
};

TEST(FlightContinuation, IsCalledOnceWhenTheValueIsPublished) {
  Flight flight;
  Recorder a, b;
  ASSERT_TRUE(flight.attach(a));
  ASSERT_TRUE(flight.attach(b));
  EXPECT_EQ(flight.outcome(), Flight::Outcome::pending);
  EXPECT_TRUE(flight.set_value(7));
  EXPECT_FALSE(flight.set_value(8));
  EXPECT_EQ(a.published_calls.load(), 1);
  EXPECT_EQ(b.published_calls.load(), 1);
  ASSERT_EQ(flight.outcome(), Flight::Outcome::value);
  EXPECT_EQ(flight.value(), 7);
}

TEST(FlightContinuation, SeesAnErrorAndAnAbandon) {
  Flight failed, abandoned;
  Recorder a, b;
  ASSERT_TRUE(failed.attach(a));
  ASSERT_TRUE(abandoned.attach(b));
  EXPECT_TRUE(failed.set_error(std::make_exception_ptr(std::runtime_error("db down"))));
  abandoned.abandon();
  EXPECT_EQ(a.published_calls.load(), 1);
  EXPECT_EQ(b.published_calls.load(), 1);
  ASSERT_EQ(failed.outcome(), Flight::Outcome::error);
  EXPECT_THROW(std::rethrow_exception(failed.error()), std::runtime_error);
  EXPECT_EQ(abandoned.outcome(), Flight::Outcome::abandoned);
}

TEST(FlightContinuation, ADetachedOneIsNeverCalledAndDetachAfterThePublishSaysSo) {
  Flight flight;
  Recorder gone, stays;
  ASSERT_TRUE(flight.attach(gone));
  ASSERT_TRUE(flight.attach(stays));
  EXPECT_TRUE(flight.detach(gone));
  EXPECT_TRUE(flight.set_value(1));
  EXPECT_EQ(gone.published_calls.load(), 0);
  EXPECT_EQ(stays.published_calls.load(), 1);
  EXPECT_FALSE(flight.detach(stays)) << "published first: its published() was called";
}

TEST(FlightContinuation, AttachAfterThePublishFailsAndCallsNothing) {
  Flight flight;
  EXPECT_TRUE(flight.set_value(3));
  Recorder late;
  EXPECT_FALSE(flight.attach(late));
  EXPECT_EQ(late.published_calls.load(), 0);
  EXPECT_EQ(flight.value(), 3);
}

TEST(FlightContinuation, ALoadLimitIsAnnouncedToTheAttachedOnes) {
  Flight flight;
  Recorder a;
  ASSERT_TRUE(flight.attach(a));
  std::chrono::steady_clock::time_point limit{};
  EXPECT_FALSE(flight.pending_limit(limit));
  const auto at = std::chrono::steady_clock::now() + std::chrono::hours(1);
  flight.set_load_limit(at, 5);
  EXPECT_EQ(a.limit_calls.load(), 1);
  ASSERT_TRUE(flight.pending_limit(limit));
  EXPECT_EQ(limit, at);
  EXPECT_TRUE(flight.claim_expiry());
  EXPECT_FALSE(flight.pending_limit(limit)) << "applied: no longer pending";
}

// Sync waiters (futex) and continuations of one flight get the one published result.
TEST(FlightContinuation, SyncWaitersAndContinuationsShareOneResult) {
  Flight flight;
  constexpr int kSync = 4;
  constexpr int kAsync = 64;
  std::vector<std::future<int>> sync;
  for (int i = 0; i < kSync; ++i) {
    sync.push_back(std::async(std::launch::async, [&] {
      std::optional<int> v;
      const auto how = flight.wait_until(std::chrono::steady_clock::now() + stampede_test::kHangGuard,
                                         std::stop_token{}, v);
      return how == Flight::Wait::value ? *v : -1;
    }));
  }
  std::vector<Recorder> async(kAsync);
  for (Recorder& r : async) ASSERT_TRUE(flight.attach(r));
  std::thread publisher([&] { (void)flight.set_value(42); });
  publisher.join();
  for (auto& f : sync) EXPECT_EQ(f.get(), 42);
  for (Recorder& r : async) EXPECT_EQ(r.published_calls.load(), 1);
}

}  // namespace
