// stampede/codec.hpp: how a value becomes bytes for an out-of-process store (Redis).
//
// A codec is a type with two static functions:
//   static std::string encode(const T&);        // may throw codec_error
//   static T decode(std::string_view bytes);    // throws codec_error for bytes it cannot read
//
// JsonCodec<T> (the default) uses nlohmann/json's to_json/from_json for T, so any type with
// NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE works. StringCodec stores a std::string's bytes as they are.
//
//   struct Item { int id; std::string name; };
//   NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Item, id, name)
//   std::string bytes = stampede::JsonCodec<Item>::encode({1, "apple"});  // {"id":1,"name":"apple"}
#pragma once

#include <concepts>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "stampede/errors.hpp"

namespace stampede {

template <class C, class T>
concept Codec = requires(const T& value, std::string_view bytes) {
  { C::encode(value) } -> std::convertible_to<std::string>;
  { C::decode(bytes) } -> std::convertible_to<T>;
};

/// JSON text via nlohmann/json. Stateless; thread-safe.
template <class T>
struct JsonCodec {
  static std::string encode(const T& value) {
    try {
      return nlohmann::json(value).dump();
    } catch (const nlohmann::json::exception& e) {
      throw codec_error(std::string("cannot encode value as JSON: ") + e.what());
    }
  }
  static T decode(std::string_view bytes) {
    try {
      return nlohmann::json::parse(bytes).template get<T>();
    } catch (const nlohmann::json::exception& e) {
      throw codec_error(std::string("cannot decode JSON value: ") + e.what());
    }
  }
};

/// The bytes of a std::string, unchanged (binary-safe). Stateless; thread-safe.
struct StringCodec {
  static std::string encode(const std::string& value) { return value; }
  static std::string decode(std::string_view bytes) { return std::string(bytes); }
};

}  // namespace stampede
