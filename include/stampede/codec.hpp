// stampede/codec.hpp: how a value becomes bytes for an out-of-process store (Redis): the Codec
// concept, and StringCodec.
//
// A codec is a type with two static functions:
//   static std::string encode(const T&);        // may throw codec_error
//   static T decode(std::string_view bytes);    // throws codec_error for bytes it cannot read
// StringCodec stores a std::string's bytes as they are; JsonCodec<T> (stampede/json.hpp) writes JSON.
//
//   static_assert(stampede::Codec<stampede::StringCodec, std::string>);
//   std::string bytes = stampede::StringCodec::encode("any \0 bytes");
//   std::string back = stampede::StringCodec::decode(bytes);
#pragma once

#include <concepts>
#include <string>
#include <string_view>

namespace stampede {

/// `C` turns a `T` into bytes and back: C::encode(const T&) gives something convertible to
/// std::string, C::decode(std::string_view) something convertible to T.
template <class C, class T>
concept Codec = requires(const T& value, std::string_view bytes) {
  { C::encode(value) } -> std::convertible_to<std::string>;
  { C::decode(bytes) } -> std::convertible_to<T>;
};

/// The bytes of a std::string, unchanged (binary-safe). Stateless; thread-safe.
struct StringCodec {
  static std::string encode(const std::string& value) { return value; }
  static std::string decode(std::string_view bytes) { return std::string(bytes); }
};

}  // namespace stampede
