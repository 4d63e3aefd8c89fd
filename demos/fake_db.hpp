// demos/fake_db.hpp: the simulated database behind the cache demos.
//
// FakeDb::load sleeps for the configured query time, counts the hit and returns a new version of
// the item, so a demo can show how many requests reached the database:
//
//   demo::FakeDb db(std::chrono::milliseconds(500));
//   demo::Item item = db.load("item:1");   // ~500 ms later; db.hits() == 1
//
// Thread-safe.
#pragma once

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>

namespace demo {

/// The cached value of the demos; JSON-serialisable so that the Redis backend can store it.
struct Item {
  std::string key;
  std::int64_t version = 0;       ///< 1 for the first load of this process, then 2, 3, ...
  std::int64_t loaded_by = 0;     ///< pid of the process that ran the query
  std::int64_t loaded_at_ms = 0;  ///< epoch ms when the query finished
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Item, key, version, loaded_by, loaded_at_ms)

class FakeDb {
 public:
  explicit FakeDb(std::chrono::milliseconds query_time) : query_time_(query_time) {}

  /// Runs the "query": sleeps query_time, then returns the item.
  /// @throws std::runtime_error while set_down(true) (the attempt still counts in hits()).
  Item load(const std::string& key) {
    std::this_thread::sleep_for(query_time_);
    const std::int64_t n = hits_.fetch_add(1, std::memory_order_acq_rel) + 1;
    if (down_.load(std::memory_order_acquire)) {
      errors_.fetch_add(1, std::memory_order_acq_rel);
      throw std::runtime_error("database unreachable");
    }
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::system_clock::now().time_since_epoch());
    last_load_ms_.store(now.count(), std::memory_order_release);
    return Item{key, n, static_cast<std::int64_t>(::getpid()), now.count()};
  }

  /// Simulates an outage: while `down`, every query fails.
  void set_down(bool down) noexcept { down_.store(down, std::memory_order_release); }
  /// @return queries that failed (set_down) so far.
  [[nodiscard]] std::int64_t errors() const noexcept { return errors_.load(std::memory_order_acquire); }
  /// @return queries run so far (failed ones included).
  [[nodiscard]] std::int64_t hits() const noexcept { return hits_.load(std::memory_order_acquire); }
  /// @return epoch ms when the last query finished (0: none yet).
  [[nodiscard]] std::int64_t last_load_ms() const noexcept {
    return last_load_ms_.load(std::memory_order_acquire);
  }

 private:
  std::chrono::milliseconds query_time_;
  std::atomic<std::int64_t> hits_{0};
  std::atomic<std::int64_t> errors_{0};
  std::atomic<bool> down_{false};
  std::atomic<std::int64_t> last_load_ms_{0};
};

}  // namespace demo
