// stampede/detail/flat_table.hpp: FlatTable<V>, an open-addressing hash table from std::string keys.
//
// The entry table of MemoryStore's shards. The caller hashes a key once (StringHash) and passes a
// PrehashedKey, so one hash picks the shard (its high bits), the slot (its low bits) and a
// floor (all of it, remixed); the table never hashes a key itself except in the string_view
// convenience overloads. Slots are visible by index for a sweep and for sampling.
//
//   detail::FlatTable<int> t;
//   const detail::PrehashedKey k{"k", detail::StringHash{}("k")};
//   if (int* v = t.find(k)) ++*v; else t.insert(k, 1);
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "stampede/detail/string_hash.hpp"

namespace stampede::detail {

/// A hash table of unique std::string keys to V: open addressing over a power-of-two array of
/// slots, linear probing, backward-shift deletion.
///
/// Layout. A slot is two words: the key's full hash and a pointer to a heap Item (key and value).
/// A probe compares hashes first and reads an Item only when they are equal, so a lookup touches
/// one slot line and, for a hit, one Item; mismatching keys are rejected without reading their
/// bytes. Items never move, so a pointer to a value stays valid until its key is erased or the
/// table is destroyed (a rehash moves slots, not Items). Keeping the entries out of line costs
/// one allocation per insert; in exchange a slot is 16 bytes, so the table's empty slots cost
/// little memory even right after it doubles, where slots holding the entries (here over 100
/// bytes each) would cost more than the entries themselves.
///
/// Capacity is a power of two (>= kMinCapacity) so the home slot is `hash & mask` (no division);
/// the table doubles before it is more than 3/4 full, which keeps the expected probe short (about
/// 2.5 slots for a hit, 8.5 for a miss at the worst load) and guarantees an empty slot, which ends
/// every probe. shrink_to_fit() halves it back while it fits at that load.
///
/// Deletion shifts back the entries that follow the erased one in its run (those whose home slot
/// is not between the hole and themselves) instead of leaving a tombstone: a table whose keys
/// come and go all the time (a cache's) never fills with tombstones that lengthen every probe
/// and would need a cleanup rehash. The price is that erase_at(i) may move a later entry into
/// slot i: a sweep by index looks at slot i again after erasing there.
///
/// Exceptions: insert() allocates the Item (copying the key and value) before it grows the
/// array, so if either throws the table is unchanged (strong guarantee); shrink_to_fit() too.
/// find() and erase are noexcept. Assigning through a pointer find() returned has V's own
/// guarantee. V's destructor must not throw.
///
/// Thread-compatible: const methods may run concurrently with each other, anything else needs
/// exclusive access (MemoryStore holds its shard's lock). Lifetime: Items live until erased or
/// until the table is destroyed.
template <class V, class Hash = StringHash>
class FlatTable {
 public:
  /// What a slot points to. The key never changes; the value may be assigned in place.
  struct Item {
    template <class U>
    Item(std::string_view k, U&& v) : key(k), value(std::forward<U>(v)) {}
    const std::string key;
    V value;
  };
  static constexpr std::size_t kMinCapacity = 16;

  FlatTable() : slots_(new Slot[kMinCapacity]()), mask_(kMinCapacity - 1) {}
  ~FlatTable() {
    for (std::size_t i = 0; i <= mask_; ++i) delete slots_[i].item;
  }
  FlatTable(const FlatTable&) = delete;
  FlatTable& operator=(const FlatTable&) = delete;

  /// @return the value of `k.key` (whose hash must be k.hash), or null if absent.
  V* find(const PrehashedKey& k) noexcept { return const_cast<V*>(std::as_const(*this).find(k)); }
  const V* find(const PrehashedKey& k) const noexcept {
    for (std::size_t i = k.hash & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.item == nullptr) return nullptr;
      if (s.hash == k.hash && StringEqual::equal(s.item->key, k.key)) return &s.item->value;
    }
  }
  V* find(std::string_view key) noexcept { return find(PrehashedKey{key, Hash{}(key)}); }
  const V* find(std::string_view key) const noexcept { return find(PrehashedKey{key, Hash{}(key)}); }

  /// Adds `k.key` -> `value`. The key must be absent (find() it first).
  /// @return the stored value.
  /// @throws what copying the key or `value` throws, or std::bad_alloc; the table is unchanged.
  template <class U>
  V& insert(const PrehashedKey& k, U&& value) {
    auto item = std::make_unique<Item>(k.key, std::forward<U>(value));
    if ((size_ + 1) * kMaxLoadDen > capacity() * kMaxLoadNum) rehash(capacity() * 2);
    place(k.hash, item.get());
    ++size_;
    return item.release()->value;
  }
  template <class U>
  V& insert(std::string_view key, U&& value) {
    return insert(PrehashedKey{key, Hash{}(key)}, std::forward<U>(value));
  }

  /// Removes `k.key` if present.
  /// @return whether it was present.
  bool erase(const PrehashedKey& k) noexcept {
    for (std::size_t i = k.hash & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.item == nullptr) return false;
      if (s.hash == k.hash && StringEqual::equal(s.item->key, k.key)) {
        erase_at(i);
        return true;
      }
    }
  }
  bool erase(std::string_view key) noexcept { return erase(PrehashedKey{key, Hash{}(key)}); }

  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  /// @return the number of slots, a power of two; slot indexes are 0 .. capacity() - 1.
  [[nodiscard]] std::size_t capacity() const noexcept { return mask_ + 1; }

  /// @return the Item in slot `slot` (< capacity()), or null if the slot is empty.
  Item* item_at(std::size_t slot) noexcept { return slots_[slot].item; }
  const Item* item_at(std::size_t slot) const noexcept { return slots_[slot].item; }
  /// @return the hash of the key in slot `slot`, which must hold an Item.
  [[nodiscard]] std::size_t hash_at(std::size_t slot) const noexcept { return slots_[slot].hash; }

  /// Erases the Item in slot `slot` (which must hold one), then shifts back the entries after it
  /// that may move: afterwards `slot` may hold one of them, never one that was before it.
  void erase_at(std::size_t slot) noexcept {
    delete slots_[slot].item;
    std::size_t hole = slot;
    for (std::size_t j = (slot + 1) & mask_; slots_[j].item != nullptr; j = (j + 1) & mask_) {
      // The entry at j may fill the hole unless its home lies after the hole (cyclically, in
      // (hole, j]): moving it before its home would hide it from its probe.
      const std::size_t from_home = (j - (slots_[j].hash & mask_)) & mask_;
      const std::size_t from_hole = (j - hole) & mask_;
      if (from_home >= from_hole) {
        slots_[hole] = slots_[j];
        hole = j;
      }
    }
    slots_[hole] = Slot{};
    --size_;
  }

  /// Halves the capacity while the entries still fit at the maximum load (down to kMinCapacity).
  /// @throws std::bad_alloc; the table is unchanged.
  void shrink_to_fit() {
    std::size_t target = capacity();
    while (target > kMinCapacity && size_ * kMaxLoadDen <= (target / 2) * kMaxLoadNum) target /= 2;
    if (target < capacity()) rehash(target);
  }

 private:
  // At most kMaxLoadNum / kMaxLoadDen of the slots are in use.
  static constexpr std::size_t kMaxLoadNum = 3;
  static constexpr std::size_t kMaxLoadDen = 4;

  struct Slot {
    std::size_t hash = 0;
    Item* item = nullptr;  // null: empty
  };

  // Puts `item` in the first empty slot of its probe. Requires one to exist.
  void place(std::size_t hash, Item* item) noexcept {
    std::size_t i = hash & mask_;
    while (slots_[i].item != nullptr) i = (i + 1) & mask_;
    slots_[i] = Slot{hash, item};
  }

  // Moves every slot to a new array of `capacity` slots (a power of two that fits them).
  void rehash(std::size_t capacity) {
    std::unique_ptr<Slot[]> old(new Slot[capacity]());  // the only step that can throw
    const std::size_t old_capacity = this->capacity();
    old.swap(slots_);
    mask_ = capacity - 1;
    for (std::size_t i = 0; i < old_capacity; ++i) {
      if (old[i].item != nullptr) place(old[i].hash, old[i].item);
    }
  }

  std::unique_ptr<Slot[]> slots_;
  std::size_t mask_;  // capacity() - 1
  std::size_t size_ = 0;
};

}  // namespace stampede::detail
