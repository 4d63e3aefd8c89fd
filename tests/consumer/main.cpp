// tests/consumer/main.cpp: uses the installed stampede package with a type of its own.
//
// Sixteen threads ask a Cache<Product> for one cold key at the same moment; the loader must run
// exactly once and every thread must get its value. The value also round-trips through
// JsonCodec<Product>, the codec an out-of-process backend would use. <stampede/version.hpp> must
// agree with the package's version (CONSUMER_PACKAGE_VERSION, from find_package). Exit 0 = pass.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <latch>
#include <stampede/json.hpp>
#include <stampede/stampede.hpp>
#include <stampede/version.hpp>
#include <string>
#include <thread>
#include <vector>

namespace shop {
struct Product {
  int id = 0;
  std::string name;
  double price = 0;
  friend bool operator==(const Product&, const Product&) = default;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Product, id, name, price)
}  // namespace shop

namespace {
int failures = 0;
void check(bool ok, const char* what) {
  std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) ++failures;
}
}  // namespace

int main() {
  using namespace std::chrono_literals;
  stampede::CacheOptions options;
  options.ttl = 30s;
  options.wait_timeout = 10s;
  stampede::Cache<shop::Product> cache(options);

  const shop::Product expected{7, "teapot", 12.5};
  std::atomic<int> loads{0};
  constexpr int kThreads = 16;
  std::vector<shop::Product> got(kThreads);
  std::latch start(kThreads);
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        start.arrive_and_wait();
        got[static_cast<std::size_t>(i)] = cache.get_or_compute("product:7", [&] {
          loads.fetch_add(1);
          std::this_thread::sleep_for(50ms);  // a slow query, so that the others pile up
          return expected;
        });
      });
    }
  }
  check(loads.load() == 1, "the loader ran once for 16 concurrent callers");
  bool all_equal = true;
  for (const shop::Product& p : got) all_equal = all_equal && p == expected;
  check(all_equal, "every caller got the loaded value");

  check(cache.get("product:7") == expected, "get() returns the cached value");
  cache.invalidate("product:7");
  check(!cache.get("product:7").has_value(), "invalidate() removes it");

  const std::string bytes = stampede::JsonCodec<shop::Product>::encode(expected);
  check(stampede::JsonCodec<shop::Product>::decode(bytes) == expected, "JsonCodec round-trips the type");
  check(cache.stats().loads == 1, "stats().loads == 1");

  static_assert(STAMPEDE_VERSION ==
                STAMPEDE_VERSION_MAJOR * 10000 + STAMPEDE_VERSION_MINOR * 100 + STAMPEDE_VERSION_PATCH);
  check(std::string(STAMPEDE_VERSION_STRING) == CONSUMER_PACKAGE_VERSION,
        "STAMPEDE_VERSION_STRING is the package's version");
  check(std::to_string(STAMPEDE_VERSION_MAJOR) + "." + std::to_string(STAMPEDE_VERSION_MINOR) + "." +
                std::to_string(STAMPEDE_VERSION_PATCH) ==
            STAMPEDE_VERSION_STRING,
        "STAMPEDE_VERSION_MAJOR/MINOR/PATCH spell STAMPEDE_VERSION_STRING");

  std::printf("consumer: %s\n", failures == 0 ? "PASS" : "FAIL");
  return failures == 0 ? 0 : 1;
}
