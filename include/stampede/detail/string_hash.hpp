// stampede/detail/string_hash.hpp: the one transparent string hash of the library.
//
// Maps keyed by std::string are searched with a std::string_view (no allocation per lookup), and a
// sharded map whose shard is chosen by the key's hash takes a PrehashedKey, so the key is hashed
// once, not once per level.
//
//   std::unordered_map<std::string, int, detail::StringHash, detail::StringEqual> m;
//   m.find(std::string_view("k"));
//   m.find(detail::PrehashedKey{"k", detail::StringHash{}("k")});
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace stampede::detail {

static_assert(sizeof(std::size_t) == sizeof(std::uint64_t), "StringHash returns a 64-bit hash");

/// @return the 8 bytes at `p` as one word (an unaligned load; byte order is the machine's).
inline std::uint64_t load_u64(const char* p) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
/// @return the 4 bytes at `p` as one word.
inline std::uint64_t load_u32(const char* p) noexcept {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

/// A key whose hash is already known (computed by StringHash).
struct PrehashedKey {
  std::string_view key;
  std::size_t hash;
};

/// Transparent hash of std::string keys: also accepts a std::string_view or a PrehashedKey.
///
/// Built for the short keys of a cache (a prefix and an id): inline, no loop below 17 bytes.
/// The key is read in 8-byte words (two overlapping words cover 8-16 bytes, two overlapping
/// 4-byte reads 4-7 bytes, three single bytes 1-3), never past its end; longer keys go 16 bytes
/// per round. Each round is a folded multiply: the 128-bit product of two words (each the data
/// XOR a constant, one also XOR the state so far), whose high and low halves are XORed. The high
/// half depends on every bit of both factors and the low half on the low bits, so every bit of
/// the result depends on every input bit, and the low bits (a power-of-two table's slot), the
/// high bits (a shard) and the whole word (a remixed index) all vary with the last character of
/// sequential keys. The length is mixed in first, so keys whose overlapping reads coincide
/// differ. Not a defence against keys chosen to collide (neither is std::hash): an attacker who
/// controls keys can lengthen probes, never make a lookup return the wrong entry.
///
/// Stateless; thread-safe. Deterministic within and across processes of one build.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return hash(s.data(), s.size()); }
  std::size_t operator()(const PrehashedKey& k) const noexcept { return k.hash; }

  /// @return the hash of the `n` bytes at `p`.
  static std::uint64_t hash(const char* p, std::size_t n) noexcept {
    const std::uint64_t state = static_cast<std::uint64_t>(n) * kMul0;  // the length goes in first
    if (n > 16) [[unlikely]]
      return hash_long(p, n, state);
    return last_round(p, n, state);
  }

 private:
  // Keys of 17 bytes and more: 16 bytes per round, then the last 1-16.
  static std::uint64_t hash_long(const char* p, std::size_t n, std::uint64_t state) noexcept {
    for (; n > 16; n -= 16, p += 16) {
      state = fold_multiply(load_u64(p) ^ kMul1, load_u64(p + 8) ^ kMul2 ^ state);
    }
    return last_round(p, n, state);
  }
  // The last 0-16 bytes, at p.
  static std::uint64_t last_round(const char* p, std::size_t n, std::uint64_t state) noexcept {
    std::uint64_t a = 0;
    std::uint64_t b = 0;
    if (n >= 8) {
      a = load_u64(p);
      b = load_u64(p + n - 8);
    } else if (n >= 4) {
      a = load_u32(p);
      b = load_u32(p + n - 4);
    } else if (n > 0) {
      a = (std::uint64_t{byte(p[0])} << 16) | (std::uint64_t{byte(p[n / 2])} << 8) | byte(p[n - 1]);
    }
    return fold_multiply(a ^ kMul1, b ^ kMul2 ^ state);
  }

  // Odd constants with about half their bits set: 2^64 / the golden ratio, and two others.
  static constexpr std::uint64_t kMul0 = 0x9E3779B97F4A7C15ULL;
  static constexpr std::uint64_t kMul1 = 0xBF58476D1CE4E5B9ULL;
  static constexpr std::uint64_t kMul2 = 0x94D049BB133111EBULL;

  static std::uint64_t fold_multiply(std::uint64_t a, std::uint64_t b) noexcept {
    __extension__ using U128 = unsigned __int128;  // a GCC/Clang type: one 64x64->128 multiply
    const U128 product = static_cast<U128>(a) * b;
    return static_cast<std::uint64_t>(product) ^ static_cast<std::uint64_t>(product >> 64);
  }
  static std::uint8_t byte(char c) noexcept { return static_cast<std::uint8_t>(c); }
};

/// Transparent equality to go with StringHash. Stateless; thread-safe.
struct StringEqual {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const noexcept { return equal(a, b); }
  bool operator()(const PrehashedKey& a, std::string_view b) const noexcept { return equal(a.key, b); }
  bool operator()(std::string_view a, const PrehashedKey& b) const noexcept { return equal(a, b.key); }

  /// `a == b`, inline for keys of up to 16 bytes (the word reads of StringHash, compared with
  /// XOR; no call to memcmp, whose call and dispatch cost more than comparing a short key).
  static bool equal(std::string_view a, std::string_view b) noexcept {
    const std::size_t n = a.size();
    if (n != b.size()) return false;
    const char* p = a.data();
    const char* q = b.data();
    if (n > 16) return std::memcmp(p, q, n) == 0;
    if (n >= 8) return ((load_u64(p) ^ load_u64(q)) | (load_u64(p + n - 8) ^ load_u64(q + n - 8))) == 0;
    if (n >= 4) return ((load_u32(p) ^ load_u32(q)) | (load_u32(p + n - 4) ^ load_u32(q + n - 4))) == 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (p[i] != q[i]) return false;
    }
    return true;
  }
};

}  // namespace stampede::detail
