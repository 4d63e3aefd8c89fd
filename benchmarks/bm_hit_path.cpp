// benchmarks/bm_hit_path.cpp: the cost of a warm hit.
//
// Every implementation holds the same warm keys and returns a copy of the value (a caller of a
// locked map cannot keep a reference past the unlock, and Cache<T> returns T by value):
//   stampede           stampede::Cache<T>::get_or_compute (memory backend, 24 h TTL)
//   mutex_map          std::unordered_map under std::mutex
//   shared_mutex_map   std::unordered_map under std::shared_mutex (shared_lock on read)
//   unsync_map         std::unordered_map without a lock, 1 thread only: the ceiling
//   stampede_visit     stampede::Cache<T>::visit: no copy; the reader returns the value's first 8
//                      bytes (of a string: its size), the part of a large value a caller might read
// Cases: one hot key, or keys drawn at random (xorshift) from `spread_keys` warm keys (1M in the
// full profile; fewer in quick/smoke, recorded in the JSON context). T = a 12-byte std::string
// (inside the small-string buffer), a 1 KiB struct, or (`kib_shared`) a std::shared_ptr<const KiB>:
// the way to hit a large value without copying it, where a hit copies the pointer (one reference
// count increment and decrement) instead of the 1 KiB. Threads 1 and 2; items_per_second is the
// total over all threads (real time).
//
// BM_BytesPerEntry_<impl>_string16/keys:K: the memory of K entries ("key:<i>" -> a 16-byte
// std::string, one byte past the small-string buffer, so each value is a heap block as well),
// for stampede and for a bare unordered_map. bytes_per_entry = the growth of malloc's bytes in use
// (mallinfo2: uordblks + hblkhd, all arenas, chunk headers included) over K; rss_bytes_per_entry =
// the growth of the resident set (/proc/self/statm) after malloc_trim, which also counts the
// pages' unused tails and misses memory malloc reuses instead of asking the kernel.
#include <malloc.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <typeinfo>
#include <unordered_map>
#include <vector>

#include "bench_util.hpp"
#include "stampede/stampede.hpp"

namespace stampede::bench {
namespace {

using namespace std::chrono_literals;

struct Hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
template <class T>
using Map = std::unordered_map<std::string, T, Hash, std::equal_to<>>;

using SharedKiB = std::shared_ptr<const KiB>;

template <class T>
T make_value(std::size_t i) {
  if constexpr (std::is_same_v<T, SharedKiB>) {
    auto v = std::make_shared<KiB>();
    v->id = i;
    return v;
  } else if constexpr (std::is_same_v<T, std::string>) {
    std::string s = "v-" + std::to_string(i % 1'000'000'000);
    s.resize(12, '.');
    return s;
  } else {
    T v;
    v.id = i;
    return v;
  }
}

template <class T>
class StampedeImpl {
 public:
  void fill(std::string_view key, T value) { cache_.put(key, std::move(value)); }
  T get(std::string_view key) {
    return cache_.get_or_compute(key, [] { return T{}; });
  }
  double misses() const { return static_cast<double>(cache_.stats().misses); }

 private:
  Cache<T> cache_{{.ttl = std::chrono::hours(24)}};
};

/// The first word of a value: what a reader of stampede_visit takes out of it.
template <class T>
std::uint64_t first_word(const T& v) {
  if constexpr (std::is_same_v<T, std::string>) {
    return v.size();
  } else {
    return v.id;
  }
}

template <class T>
class StampedeVisitImpl {
 public:
  void fill(std::string_view key, T value) { cache_.put(key, std::move(value)); }
  std::uint64_t get(std::string_view key) {
    return cache_.visit(
        key, [] { return T{}; }, [](const T& v) { return first_word(v); });
  }
  double misses() const { return static_cast<double>(cache_.stats().misses); }

 private:
  Cache<T> cache_{{.ttl = std::chrono::hours(24)}};
};

template <class T>
class MutexMapImpl {
 public:
  void fill(std::string_view key, T value) { map_.insert_or_assign(std::string(key), std::move(value)); }
  T get(std::string_view key) {
    std::lock_guard l(mu_);
    auto it = map_.find(key);
    return it == map_.end() ? T{} : it->second;
  }
  double misses() const { return 0; }

 private:
  std::mutex mu_;
  Map<T> map_;
};

template <class T>
class SharedMutexMapImpl {
 public:
  void fill(std::string_view key, T value) { map_.insert_or_assign(std::string(key), std::move(value)); }
  T get(std::string_view key) {
    std::shared_lock l(mu_);
    auto it = map_.find(key);
    return it == map_.end() ? T{} : it->second;
  }
  double misses() const { return 0; }

 private:
  std::shared_mutex mu_;
  Map<T> map_;
};

template <class T>
class UnsyncMapImpl {
 public:
  void fill(std::string_view key, T value) { map_.insert_or_assign(std::string(key), std::move(value)); }
  T get(std::string_view key) {
    auto it = map_.find(key);
    return it == map_.end() ? T{} : it->second;
  }
  double misses() const { return 0; }

 private:
  Map<T> map_;
};

Profile g_profile;

/// The warm data of the benchmark that runs now. Built by the Setup callback (before the benchmark's
/// threads start) and kept while consecutive benchmarks need the same one, so 1M keys of 1 KiB are
/// built once per implementation rather than once per thread count.
struct WorldBase {
  virtual ~WorldBase() = default;
  std::string id;
};
std::unique_ptr<WorldBase> g_world;

template <class Impl>
struct World : WorldBase {
  Impl impl;
  std::vector<std::string> keys;
  std::string hot = "hot-key";
};

template <template <class> class Impl, class T>
void setup(const benchmark::State& state) {
  const std::size_t n = state.range(0) == 0 ? 1 : g_profile.spread_keys;
  const std::string id = std::string(typeid(Impl<T>).name()) + "/" + std::to_string(n);
  if (g_world && g_world->id == id) return;
  g_world.reset();
  auto w = std::make_unique<World<Impl<T>>>();
  w->id = id;
  if (n == 1) {
    w->impl.fill(w->hot, make_value<T>(0));
  } else {
    w->keys.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      w->keys.push_back("key:" + std::to_string(i));
      w->impl.fill(w->keys.back(), make_value<T>(i));
    }
  }
  g_world = std::move(w);
}

template <template <class> class Impl, class T>
void BM_HitPath(benchmark::State& state) {
  auto& w = static_cast<World<Impl<T>>&>(*g_world);
  const bool hot = state.range(0) == 0;
  const std::size_t n = w.keys.size();
  std::uint64_t x = 0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(state.thread_index() + 1);
  const double misses_before = w.impl.misses();
  for (auto _ : state) {
    std::string_view key = w.hot;
    if (!hot) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      key = w.keys[x % n];
    }
    auto v = w.impl.get(key);  // a T, or what a visit's reader returned
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    state.counters["keys"] = hot ? 1 : static_cast<double>(n);
    state.counters["misses"] = w.impl.misses() - misses_before;  // 0: every call was a warm hit
  }
}

template <template <class> class Impl, class T>
void add(const std::string& impl, const std::string& type, int max_threads) {
  for (int keys : {0, 1}) {
    const std::string name = "BM_HitPath_" + impl + "_" + (keys == 0 ? "hot" : "spread") + "_" + type;
    auto* b = benchmark::RegisterBenchmark(name.c_str(), BM_HitPath<Impl, T>)
                  ->Arg(keys)
                  ->ArgName("spread")
                  ->Setup(setup<Impl, T>)
                  ->UseRealTime();
    for (int t = 1; t <= max_threads; ++t) b->Threads(t);
    if (g_profile.min_time > 0) {
      b->MinTime(g_profile.min_time);
    } else {
      b->Iterations(1000);
    }
    repeat(b, g_profile);
  }
}

/// Bytes malloc has handed out and not got back: small chunks in every arena plus mmapped blocks.
std::size_t malloc_in_use() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

std::size_t rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

template <template <class> class Impl>
void BM_BytesPerEntry(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  g_world.reset();  // the hit-path data is not part of the measurement
  double heap = 0, rss = 0;
  for (auto _ : state) {
    malloc_trim(0);
    const std::size_t heap_before = malloc_in_use(), rss_before = rss_bytes();
    auto impl = std::make_unique<Impl<std::string>>();
    for (std::size_t i = 0; i < n; ++i) {
      std::string value = "v-" + std::to_string(i);
      value.resize(16, '.');
      impl->fill("key:" + std::to_string(i), std::move(value));
    }
    heap = static_cast<double>(malloc_in_use() - heap_before) / static_cast<double>(n);
    rss = (static_cast<double>(rss_bytes()) - static_cast<double>(rss_before)) / static_cast<double>(n);
    benchmark::DoNotOptimize(impl.get());
  }
  state.counters["bytes_per_entry"] = heap;
  state.counters["rss_bytes_per_entry"] = rss;
  state.counters["keys"] = static_cast<double>(n);
}

}  // namespace

void register_hit_path_benchmarks(const Profile& p) {
  g_profile = p;
  add<StampedeImpl, std::string>("stampede", "string", 2);
  add<SharedMutexMapImpl, std::string>("shared_mutex_map", "string", 2);
  add<MutexMapImpl, std::string>("mutex_map", "string", 2);
  add<UnsyncMapImpl, std::string>("unsync_map", "string", 1);
  add<StampedeImpl, KiB>("stampede", "kib", 2);
  add<SharedMutexMapImpl, KiB>("shared_mutex_map", "kib", 2);
  add<MutexMapImpl, KiB>("mutex_map", "kib", 2);
  add<UnsyncMapImpl, KiB>("unsync_map", "kib", 1);
  add<StampedeImpl, SharedKiB>("stampede", "kib_shared", 2);
  add<StampedeVisitImpl, std::string>("stampede_visit", "string", 2);
  add<StampedeVisitImpl, KiB>("stampede_visit", "kib", 2);
  add<SharedMutexMapImpl, SharedKiB>("shared_mutex_map", "kib_shared", 2);
  const int entries = p.smoke() ? 10'000 : 1'000'000;
  benchmark::RegisterBenchmark("BM_BytesPerEntry_stampede_string16", BM_BytesPerEntry<StampedeImpl>)
      ->Arg(entries)
      ->ArgName("keys")
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_BytesPerEntry_unordered_map_string16", BM_BytesPerEntry<UnsyncMapImpl>)
      ->Arg(entries)
      ->ArgName("keys")
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
}

}  // namespace stampede::bench
