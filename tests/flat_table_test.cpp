// Tests of detail::FlatTable (MemoryStore's entry table) on its own, and of how detail::StringHash
// spreads keys over a table's slots, MemoryStore's shards and its floors.
#include "stampede/detail/flat_table.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "stampede/detail/string_hash.hpp"

namespace {

using stampede::detail::FlatTable;
using stampede::detail::PrehashedKey;
using stampede::detail::StringEqual;
using stampede::detail::StringHash;

// Every key's hash; collisions are resolved by comparing keys alone.
struct ConstantHash {
  std::size_t operator()(std::string_view) const noexcept { return 42; }
};
// Two keys per hash ("a0" and "b0" share one) and runs that cross the end of a small table.
struct PairHash {
  std::size_t operator()(std::string_view s) const noexcept {
    return static_cast<std::size_t>(std::stoul(std::string(s.substr(1)))) + (std::size_t{1} << 40) - 3;
  }
};

/// @return the table's contents, read slot by slot.
template <class V, class H>
std::map<std::string, V> contents(const FlatTable<V, H>& t) {
  std::map<std::string, V> out;
  for (std::size_t i = 0; i < t.capacity(); ++i) {
    if (const auto* item = t.item_at(i)) {
      EXPECT_TRUE(out.emplace(item->key, item->value).second) << "two slots hold " << item->key;
    }
  }
  return out;
}

TEST(FlatTableTest, InsertFindEraseOneKey) {
  FlatTable<int> t;
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(t.find("k"), nullptr);
  t.insert("k", 1);
  ASSERT_NE(t.find("k"), nullptr);
  EXPECT_EQ(*t.find("k"), 1);
  EXPECT_EQ(t.size(), 1u);
  *t.find("k") = 2;  // assign in place
  EXPECT_EQ(*t.find(PrehashedKey{"k", StringHash{}("k")}), 2);
  EXPECT_FALSE(t.erase("other"));
  EXPECT_TRUE(t.erase("k"));
  EXPECT_EQ(t.find("k"), nullptr);
  EXPECT_TRUE(t.empty());
}

TEST(FlatTableTest, GrowsPastThreeQuartersAndShrinksBackWhenEmptied) {
  FlatTable<int> t;
  const std::size_t start = t.capacity();
  EXPECT_EQ(start, FlatTable<int>::kMinCapacity);
  for (int i = 0; i < 1000; ++i) {
    t.insert("key:" + std::to_string(i), i);
    EXPECT_LE(t.size() * 4, t.capacity() * 3) << "more than 3/4 full after " << i + 1 << " inserts";
    EXPECT_EQ(t.capacity() & (t.capacity() - 1), 0u) << "capacity is not a power of two";
  }
  EXPECT_EQ(t.capacity(), 2048u);  // 1000 > 3/4 of 1024
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(*t.find("key:" + std::to_string(i)), i) << "lost in a rehash";
  for (int i = 10; i < 1000; ++i) ASSERT_TRUE(t.erase("key:" + std::to_string(i)));
  EXPECT_EQ(t.capacity(), 2048u) << "erase alone never shrinks";
  t.shrink_to_fit();
  EXPECT_EQ(t.capacity(), 16u);  // 10 entries fit in 16 slots at 3/4
  for (int i = 0; i < 10; ++i) ASSERT_EQ(*t.find("key:" + std::to_string(i)), i) << "lost in a shrink";
  for (int i = 0; i < 10; ++i) t.erase("key:" + std::to_string(i));
  t.shrink_to_fit();
  EXPECT_EQ(t.capacity(), FlatTable<int>::kMinCapacity);
}

TEST(FlatTableTest, KeysWithEqualHashesAreTellApartByTheirBytes) {
  FlatTable<int, ConstantHash> t;
  for (int i = 0; i < 100; ++i) t.insert("k" + std::to_string(i), i);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(*t.find("k" + std::to_string(i)), i);
  EXPECT_EQ(t.find("k100"), nullptr);
  // Erase every other one: the backward shift keeps the rest of the one long run findable.
  for (int i = 0; i < 100; i += 2) ASSERT_TRUE(t.erase("k" + std::to_string(i)));
  for (int i = 0; i < 100; ++i) {
    if (i % 2 == 0) {
      EXPECT_EQ(t.find("k" + std::to_string(i)), nullptr) << i;
    } else {
      ASSERT_NE(t.find("k" + std::to_string(i)), nullptr) << i;
      EXPECT_EQ(*t.find("k" + std::to_string(i)), i);
    }
  }
  EXPECT_EQ(t.size(), 50u);
}

TEST(FlatTableTest, EraseShiftsBackEntriesOfRunsThatWrapAround) {
  // 16 slots; PairHash puts "a<n>" and "b<n>" at home slot n + 13 (mod 16), so the runs of homes
  // 13, 14 and 15 spill over into slots 0, 1, ...
  FlatTable<int, PairHash> t;
  for (const char* k : {"a0", "b0", "a1", "b1", "a2", "b2"}) t.insert(k, 1);
  ASSERT_EQ(t.capacity(), 16u);
  std::size_t wrapped = 0;
  for (std::size_t i = 0; i < 3; ++i) wrapped += t.item_at(i) != nullptr;
  ASSERT_EQ(wrapped, 3u) << "the run did not wrap";
  // Erasing the first of the run moves each later entry back, across the end of the array.
  ASSERT_TRUE(t.erase("a0"));
  for (const char* k : {"b0", "a1", "b1", "a2", "b2"}) EXPECT_NE(t.find(k), nullptr) << k;
  // Before: 13 a0, 14 b0, 15 a1, 0 b1, 1 a2, 2 b2. After: each one slot back, b1 across the end.
  ASSERT_NE(t.item_at(15), nullptr);
  EXPECT_EQ(t.item_at(15)->key, "b1") << "the entry after the end was not moved back across it";
  ASSERT_NE(t.item_at(1), nullptr);
  EXPECT_EQ(t.item_at(1)->key, "b2");
  EXPECT_EQ(t.item_at(2), nullptr) << "the run's last slot was not emptied";
  // Every entry stays at or after its home (cyclically) with no empty slot in between.
  for (std::size_t i = 0; i < t.capacity(); ++i) {
    if (t.item_at(i) == nullptr) continue;
    for (std::size_t j = t.hash_at(i) & 15; j != i; j = (j + 1) & 15) {
      EXPECT_NE(t.item_at(j), nullptr) << "a hole between " << t.item_at(i)->key << "'s home and its slot";
    }
  }
}

TEST(FlatTableTest, SweepByIndexSeesEveryEntryOnceEvenWhenErasesShiftThem) {
  // The MemoryStore sweep: walk the slots, erase what matches, look at the same slot again after
  // an erase. Every entry must be judged; the odd ones kept, the even ones dropped.
  FlatTable<int, ConstantHash> collide;  // one long run: every erase shifts the rest back
  FlatTable<int> spread;
  for (int i = 0; i < 300; ++i) {
    collide.insert("k" + std::to_string(i), i);
    spread.insert("k" + std::to_string(i), i);
  }
  auto sweep = [](auto& t) {
    std::size_t looked = 0;
    for (std::size_t slot = 0; slot < t.capacity();) {
      ++looked;
      const auto* item = t.item_at(slot);
      if (item != nullptr && item->value % 2 == 0) {
        t.erase_at(slot);  // stay: a later entry may have moved here
      } else {
        ++slot;
      }
    }
    return looked;
  };
  const std::size_t looked = sweep(collide);
  EXPECT_EQ(looked, collide.capacity() + 150) << "one look per slot plus one per erase";
  sweep(spread);
  const auto c = contents(collide);
  const auto s = contents(spread);
  EXPECT_EQ(c.size(), 150u);
  EXPECT_EQ(s.size(), 150u);
  for (const auto& [k, v] : c) EXPECT_EQ(v % 2, 1) << k;
  for (const auto& [k, v] : s) EXPECT_EQ(v % 2, 1) << k;
}

TEST(FlatTableTest, SamplingFromAnySlotReachesEntries) {
  // MemoryStore's eviction walks from a random slot: from every start, the first entry found is
  // one that is in the table, and a walk over all slots finds all of them.
  FlatTable<int> t;
  for (int i = 0; i < 40; ++i) t.insert("k" + std::to_string(i), i);
  for (std::size_t start = 0; start < t.capacity(); ++start) {
    std::set<int> seen;
    for (std::size_t n = 0; n < t.capacity(); ++n) {
      if (const auto* item = t.item_at((start + n) & (t.capacity() - 1))) seen.insert(item->value);
    }
    ASSERT_EQ(seen.size(), 40u) << "from slot " << start;
  }
}

/// A value whose copy throws while `armed`.
struct Fragile {
  static inline bool armed = false;
  int v = 0;
  explicit Fragile(int value) : v(value) {}
  Fragile(const Fragile& o) : v(o.v) {
    if (armed) throw std::runtime_error("copy failed");
  }
  Fragile& operator=(const Fragile&) = default;
};

TEST(FlatTableTest, ThrowingCopyLeavesTheTableUnchanged) {
  FlatTable<Fragile> t;
  // 12 entries: the 13th insert would grow 16 slots to 32 (strong guarantee across a grow too).
  for (int i = 0; i < 12; ++i) t.insert("k" + std::to_string(i), Fragile(i));
  const std::size_t capacity = t.capacity();
  std::vector<std::pair<std::string, int>> before;
  for (std::size_t i = 0; i < capacity; ++i) {
    if (const auto* item = t.item_at(i)) before.emplace_back(item->key, item->value.v);
  }
  const Fragile value(99);
  Fragile::armed = true;
  EXPECT_THROW(t.insert("new", value), std::runtime_error);
  Fragile::armed = false;
  EXPECT_EQ(t.size(), 12u);
  EXPECT_EQ(t.capacity(), capacity);
  EXPECT_EQ(t.find("new"), nullptr);
  std::vector<std::pair<std::string, int>> after;
  for (std::size_t i = 0; i < capacity; ++i) {
    if (const auto* item = t.item_at(i)) after.emplace_back(item->key, item->value.v);
  }
  EXPECT_EQ(after, before) << "a slot changed";
  t.insert("new", value);  // and the table still works
  EXPECT_EQ(t.find("new")->v, 99);
}

TEST(FlatTableTest, RandomOperationsMatchUnorderedMap) {
  // Bounded: 200k operations over 2,000 keys, with a hash that collides in its low bits (every 8th
  // key shares a home) and one that does not.
  struct LowBitsHash {
    std::size_t operator()(std::string_view s) const noexcept { return StringHash{}(s) & ~std::size_t{7}; }
  };
  auto run = [](auto table_tag, std::uint32_t seed) {
    using Table = typename decltype(table_tag)::type;
    Table t;
    std::unordered_map<std::string, int> model;
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> key_of(0, 1999), op_of(0, 99);
    std::size_t max_capacity = 0;
    for (int n = 0; n < 200'000; ++n) {
      const std::string key = "key:" + std::to_string(key_of(rng));
      const int op = op_of(rng);
      // Phases: mostly inserts, then mostly erases, so the table grows and empties repeatedly.
      const bool filling = (n / 20'000) % 2 == 0;
      if (op < (filling ? 60 : 20)) {
        if (int* v = t.find(key)) {
          *v = n;
        } else {
          t.insert(key, n);
        }
        model[key] = n;
      } else if (op < 95) {
        ASSERT_EQ(t.erase(key), model.erase(key) == 1) << key;
      } else {
        t.shrink_to_fit();
      }
      const int* v = t.find(key);
      auto it = model.find(key);
      ASSERT_EQ(v != nullptr, it != model.end()) << key << " at op " << n;
      if (v != nullptr) {
        ASSERT_EQ(*v, it->second);
      }
      ASSERT_EQ(t.size(), model.size());
      max_capacity = std::max(max_capacity, t.capacity());
      if (n % 10'000 == 0) {
        std::map<std::string, int> expected(model.begin(), model.end());
        ASSERT_EQ(contents(t), expected) << "at op " << n;
      }
    }
    EXPECT_GT(max_capacity, 1024u) << "the run never grew the table much";
  };
  run(std::type_identity<FlatTable<int>>{}, 1);
  run(std::type_identity<FlatTable<int, LowBitsHash>>{}, 2);
}

TEST(FlatTableTest, ItemsStayPutAcrossRehash) {
  FlatTable<int> t;
  int* first = &t.insert("first", 1);
  for (int i = 0; i < 5000; ++i) t.insert("k" + std::to_string(i), i);
  EXPECT_EQ(t.find("first"), first) << "a grow moved an entry";
}

// ---- StringHash -------------------------------------------------------------------------------

TEST(StringHashTest, EveryLengthReadsOnlyTheKeysBytes) {
  // Keys cut out of a larger buffer at every length 0..64: the bytes after the key differ between
  // the two buffers, so a hash that read past the key's end would differ. (ASan also checks reads
  // of an exact-size heap copy.)
  std::string a(80, 'x');
  std::string b(80, 'y');
  for (std::size_t i = 0; i < 80; ++i) a[i] = b[i] = static_cast<char>('a' + i % 26);
  std::set<std::size_t> seen;
  for (std::size_t n = 0; n <= 64; ++n) {
    a[n] = '!';
    b[n] = '?';
    const std::string_view ka(a.data(), n);
    const std::string_view kb(b.data(), n);
    EXPECT_EQ(StringHash{}(ka), StringHash{}(kb)) << "length " << n << " read past its end";
    const std::string exact(ka);  // a heap block of the key's size (n > 15)
    EXPECT_EQ(StringHash{}(exact), StringHash{}(ka));
    seen.insert(StringHash{}(ka));
    a[n] = b[n] = static_cast<char>('a' + n % 26);
  }
  EXPECT_EQ(seen.size(), 65u) << "prefixes of one string share a hash";
}

TEST(StringHashTest, EveryByteOfTheKeyChangesTheHash) {
  for (std::size_t n = 1; n <= 40; ++n) {
    const std::string key(n, 'k');
    const std::size_t h = StringHash{}(key);
    for (std::size_t i = 0; i < n; ++i) {
      std::string other = key;
      other[i] = 'j';
      EXPECT_NE(StringHash{}(other), h) << "length " << n << ", byte " << i << " is ignored";
    }
  }
}

TEST(StringEqualTest, KeysOfEveryLengthDifferingInAnyByteAreUnequal) {
  // Equal contents at different addresses, then one byte changed at each position, lengths 0..40
  // (the inline word compares up to 16 bytes, memcmp beyond).
  for (std::size_t n = 0; n <= 40; ++n) {
    std::string a;
    for (std::size_t i = 0; i < n; ++i) a += static_cast<char>('a' + i % 26);
    const std::string b = a;
    EXPECT_TRUE(StringEqual::equal(a, b)) << "length " << n;
    EXPECT_FALSE(StringEqual::equal(a, b + "x")) << "length " << n;
    for (std::size_t i = 0; i < n; ++i) {
      std::string c = a;
      c[i] = '#';
      EXPECT_FALSE(StringEqual::equal(a, c)) << "length " << n << ", byte " << i;
      EXPECT_FALSE(StringEqual{}(c, a)) << "length " << n << ", byte " << i;
    }
  }
}

TEST(StringHashTest, SequentialKeysSpreadOverSlotsShardsAndFloors) {
  // How MemoryStore uses one hash: the low bits pick a slot of a power-of-two table, the top 4
  // bits one of 16 shards, a Fibonacci remix of the whole the 2,048 floors. 100k keys "key:<i>".
  constexpr std::size_t kKeys = 100'000;
  constexpr std::size_t kSlots = std::size_t{1} << 17;  // 0.76 keys per slot
  std::vector<std::uint32_t> slots(kSlots), shards(16), floors(2048), low_bits(256);
  for (std::size_t i = 0; i < kKeys; ++i) {
    const std::size_t h = StringHash{}("key:" + std::to_string(i));
    ++slots[h & (kSlots - 1)];
    ++shards[h >> 60];
    ++floors[(h * 0x9E3779B97F4A7C15ULL) >> 53];
    ++low_bits[h & 255];
  }
  // Bounds far from what a uniform hash gives (binomial tails below 1e-9), far below what a
  // hash that ignores the last characters, or leaves the top or low bits fixed, gives.
  const auto [shard_min, shard_max] = std::minmax_element(shards.begin(), shards.end());
  EXPECT_GT(*shard_min, 6250u * 9 / 10) << "a shard gets too few keys";
  EXPECT_LT(*shard_max, 6250u * 11 / 10) << "a shard gets too many keys";
  const auto [low_min, low_max] = std::minmax_element(low_bits.begin(), low_bits.end());
  EXPECT_GT(*low_min, 390u * 7 / 10);
  EXPECT_LT(*low_max, 390u * 13 / 10);
  EXPECT_LE(*std::max_element(slots.begin(), slots.end()), 10u) << "a slot is the home of too many keys";
  const std::size_t used = kSlots - static_cast<std::size_t>(std::count(slots.begin(), slots.end(), 0u));
  // A uniform hash leaves e^-0.76 = 47% of the slots empty: about 69k used.
  EXPECT_GT(used, 65'000u) << "homes cluster on few slots";
  const auto [floor_min, floor_max] = std::minmax_element(floors.begin(), floors.end());
  EXPECT_GT(*floor_min, 15u);
  EXPECT_LT(*floor_max, 100u);  // mean 48.8
}

}  // namespace
