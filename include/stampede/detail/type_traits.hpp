// stampede/detail/type_traits.hpp: compile-time questions the Cache asks about its value type.
//
//   static_assert(detail::is_optional_v<std::optional<int>>);   // negative caching applies
#pragma once

#include <optional>
#include <type_traits>

namespace stampede::detail {

/// True for std::optional<U> (whose empty value a Cache may cache for negative_ttl).
template <class T>
inline constexpr bool is_optional_v = false;
template <class U>
inline constexpr bool is_optional_v<std::optional<U>> = true;

}  // namespace stampede::detail
