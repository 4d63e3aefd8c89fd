// stampede/json.hpp: JSON for stampede: JsonCodec<T>, the Redis store's default codec, and Stats
// as JSON. The only public headers that include nlohmann/json.hpp are this one and those that
// need its codec (the Redis store).
//
//   struct Item { int id; std::string name; };
//   NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Item, id, name)
//   std::string bytes = stampede::JsonCodec<Item>::encode({1, "apple"});  // {"id":1,"name":"apple"}
//   nlohmann::json j = cache.stats();                                       // {"hits":10,...}
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "stampede/errors.hpp"
#include "stampede/stats.hpp"

namespace stampede {

/// A type nlohmann/json converts to and from JSON (its to_json/from_json, e.g. made by
/// NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE).
template <class T>
concept JsonConvertible = requires(const T& value, const nlohmann::json& json) {
  nlohmann::json(value);
  json.template get<T>();
};

/// JSON text via nlohmann/json. Stateless; thread-safe. Its functions exist only for a
/// JsonConvertible T, so Codec<JsonCodec<T>, T> is false for any other.
template <class T>
struct JsonCodec {
  /// @return `value` as JSON text. @throws codec_error if nlohmann/json cannot write it.
  static std::string encode(const T& value)
    requires JsonConvertible<T>
  {
    try {
      return nlohmann::json(value).dump();
    } catch (const nlohmann::json::exception& e) {
      throw codec_error(std::string("cannot encode value as JSON: ") + e.what());
    }
  }
  /// @return the value the JSON text `bytes` holds. @throws codec_error for bytes it cannot read.
  static T decode(std::string_view bytes)
    requires JsonConvertible<T>
  {
    try {
      return nlohmann::json::parse(bytes).template get<T>();
    } catch (const nlohmann::json::exception& e) {
      throw codec_error(std::string("cannot decode JSON value: ") + e.what());
    }
  }
};

/// std::optional<U> as JSON: an empty optional is `null`, a value is U's JSON (so a
/// Cache<std::optional<U>> can cache an empty result, see CacheOptions::negative_ttl). U must not
/// itself encode as `null`. Stateless; thread-safe.
template <class U>
struct JsonCodec<std::optional<U>> {
  /// @return "null" or U's JSON text. @throws codec_error if nlohmann/json cannot write it.
  static std::string encode(const std::optional<U>& value)
    requires JsonConvertible<U>
  {
    return value ? JsonCodec<U>::encode(*value) : std::string("null");
  }
  /// @return std::nullopt for `null`, else the U the JSON text holds.
  /// @throws codec_error for bytes it cannot read.
  static std::optional<U> decode(std::string_view bytes)
    requires JsonConvertible<U>
  {
    if (bytes == "null") return std::nullopt;
    return JsonCodec<U>::decode(bytes);
  }
};

namespace detail {
inline void add_json(nlohmann::json& json, const char* name, stat_count value) { json[name] = value; }
inline void add_json(nlohmann::json& json, const char* name, stat_nanoseconds value) {
  json[std::string(name) + "_ns"] = value.count();
}
}  // namespace detail

/// Stats as a JSON object: one member per counter, named as in Stats; a duration in
/// nanoseconds as "<name>_ns" (load_time_ns). Found by nlohmann/json, so `nlohmann::json j = s;`
/// works too.
/// @param json receives the object.
/// @param stats the snapshot.
inline void to_json(nlohmann::json& json, const Stats& stats) {
  json = nlohmann::json::object();
#define STAMPEDE_JSON_MEMBER(name, kind, help) detail::add_json(json, #name, stats.name);
  STAMPEDE_COUNTERS(STAMPEDE_JSON_MEMBER)
#undef STAMPEDE_JSON_MEMBER
}

/// @return `stats` as a JSON object (see to_json(nlohmann::json&, const Stats&)).
inline nlohmann::json to_json(const Stats& stats) {
  nlohmann::json json;
  to_json(json, stats);
  return json;
}

}  // namespace stampede
