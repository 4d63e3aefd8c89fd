#include <gtest/gtest.h>

#include <atomic>
#include <stampede/stampede.hpp>

TEST(Smoke, LoadsOnceThenHits) {
  stampede::Cache<int> cache;
  std::atomic<int> loads{0};
  EXPECT_EQ(cache.get_or_compute("k", [&] { return ++loads; }), 1);
  EXPECT_EQ(cache.get_or_compute("k", [&] { return ++loads; }), 1);
  EXPECT_EQ(loads.load(), 1);
}
