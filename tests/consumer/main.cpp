// tests/consumer/main.cpp: uses the installed stampede package with a type of its own.
//
// Sixteen threads ask a Cache<Product> for one cold key at the same moment; the loader must run
// exactly once and every thread must get its value. The value also round-trips through
// JsonCodec<Product>, the codec an out-of-process backend would use. What crosses the library's
// boundary (which a shared build with hidden visibility exports by name) is used once each: a
// TokenLock of the consumer's own behind the library's argument checks, exceptions thrown inside
// the library, a store's counters, the Prometheus and JSON output. <stampede/version.hpp> must
// agree with the package's version (CONSUMER_PACKAGE_VERSION, from find_package). Exit 0 = pass.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <latch>
#include <memory>
#include <optional>
#include <stampede/json.hpp>
#include <stampede/stampede.hpp>
#include <stampede/version.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
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

/// A TokenLock of the consumer's own: the library's public methods check arguments before they
/// reach it.
class NeverLock final : public stampede::TokenLock {
 public:
  int reached = 0;

 private:
  std::optional<stampede::LockToken> do_try_acquire(std::string_view, std::chrono::milliseconds) override {
    ++reached;
    return std::nullopt;
  }
  bool do_release(std::string_view, std::string_view) override { return ++reached < 0; }
  bool do_renew(std::string_view, std::string_view, std::chrono::milliseconds) override {
    return ++reached < 0;
  }
  std::uint64_t do_bump_fence(std::string_view) override { return static_cast<std::uint64_t>(++reached); }
  std::unique_ptr<stampede::Subscription> do_subscribe(std::string_view) override {
    ++reached;
    return nullptr;
  }
  void do_notify(std::string_view) override { ++reached; }
};

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

  NeverLock never;
  bool rejected = false;
  try {
    (void)never.try_acquire("", 1s);
  } catch (const std::invalid_argument&) {
    rejected = true;
  }
  check(rejected && never.reached == 0,
        "TokenLock's checks reject an empty key before a lock of ours sees it");
  check(!never.try_acquire("k", 1s) && never.reached == 1, "a good call reaches a lock of ours");

  bool caught = false;
  try {
    (void)stampede::LockLease(nullptr, "k", stampede::LockToken{}, 1s);
  } catch (const std::invalid_argument&) {
    caught = true;
  }
  check(caught, "an exception thrown inside the library is caught by its type");

  stampede::Cache<int> small(options, stampede::memory_backend<int>(1));
  for (int i = 0; i < 3; ++i) (void)small.get_or_compute("k" + std::to_string(i), [i] { return i; });
  check(small.stats().evictions == 2, "the memory store reports its evictions through the library");
  check(stampede::to_prometheus(small.stats()).find("\nstampede_loads_total 3\n") != std::string::npos,
        "to_prometheus() writes the counters");
  check(stampede::to_json(small.stats())["evictions"] == 2, "to_json() writes the counters");

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
