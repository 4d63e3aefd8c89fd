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
#include <functional>
#include <string_view>

namespace stampede::detail {

/// A key whose hash is already known (computed by StringHash).
struct PrehashedKey {
  std::string_view key;
  std::size_t hash;
};

/// Transparent hash of std::string keys: also accepts a std::string_view or a PrehashedKey.
/// Stateless; thread-safe.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  std::size_t operator()(const PrehashedKey& k) const noexcept { return k.hash; }
};

/// Transparent equality to go with StringHash. Stateless; thread-safe.
struct StringEqual {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
  bool operator()(const PrehashedKey& a, std::string_view b) const noexcept { return a.key == b; }
  bool operator()(std::string_view a, const PrehashedKey& b) const noexcept { return a == b.key; }
};

}  // namespace stampede::detail
