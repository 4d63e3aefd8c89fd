// fuzz/redis_entry_fuzzer.cpp: the Redis store's value-hash decoder (detail::decode_entry, the
// decoding half of RedisBytesStore::get) and the JSON codec after it, on arbitrary HGETALL replies.
//
// Input: the reply's elements, separated by '\n' (so a seed is readable text; any other byte may
// appear in an element). An element that begins with byte 0x01 is an integer reply instead of a
// string (its str is empty, as hiredis leaves it). An input that begins with '!' is a status reply,
// not an array. The empty input is the empty array (no such key).
//
// Checked: decode_entry returns or throws codec_error / backend_error (any other exception escapes
// and libFuzzer reports it), never crashes; a non-array gives backend_error, the empty array
// std::nullopt; and whether it accepts the hash and what it returns agree with a reference model
// written here from docs/wire-format.md (format "1"; value, soft_expiry_ms, hard_expiry_ms and fence
// required; load_time_ms optional; times signed and the fence unsigned decimal 64-bit integers; the
// last of a repeated field counts; unknown fields and an odd last element ignored). An accepted
// value then goes through JsonCodec<Item>::decode, which must return or throw codec_error.
//
//   build/fuzz/fuzz/redis_entry_fuzzer fuzz/corpus/redis_entry_fuzzer -max_total_time=60
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "stampede/errors.hpp"
#include "stampede/json.hpp"
#include "stampede/redis/reply.hpp"
#include "wire.hpp"

// A value type for the JSON codec (outside the anonymous namespace: nlohmann/json finds its
// to_json/from_json by argument-dependent lookup, and an unused internal to_json is a warning).
namespace redis_entry_fuzzer {
struct Item {
  int id = 0;
  std::string name;
  std::vector<double> prices;
  std::map<std::string, bool> flags;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Item, id, name, prices, flags)
}  // namespace redis_entry_fuzzer

namespace {

using redis_entry_fuzzer::Item;
using stampede::redis::Reply;
using stampede::redis::detail::RawEntry;

[[noreturn]] void violation(const char* what) {
  std::fprintf(stderr, "redis_entry_fuzzer: invariant violated: %s\n", what);
  std::abort();
}

// A decimal integer of `Int`: an optional '-' (signed types only), then at least one digit, in range.
template <class Int>
std::optional<Int> model_parse(const std::string& text) {
  std::size_t i = 0;
  bool negative = false;
  if (std::numeric_limits<Int>::is_signed && i < text.size() && text[i] == '-') {
    negative = true;
    ++i;
  }
  if (i == text.size()) return std::nullopt;
  // Accumulate the magnitude as unsigned: the most negative value's magnitude does not fit in Int.
  using U = std::make_unsigned_t<Int>;
  const U limit = negative ? U(std::numeric_limits<Int>::max()) + 1 : U(std::numeric_limits<Int>::max());
  U v = 0;
  for (; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
    const U digit = U(text[i] - '0');
    if (v > (limit - digit) / 10) return std::nullopt;
    v = v * 10 + digit;
  }
  if constexpr (std::numeric_limits<Int>::is_signed) {
    if (negative) return v == 0 ? Int(0) : static_cast<Int>(-static_cast<Int>(v - 1) - 1);
  }
  return static_cast<Int>(v);
}

// The reference decoder. @return the entry, or std::nullopt where decode_entry must throw codec_error.
std::optional<RawEntry> model_decode(const std::vector<Reply>& elements) {
  std::map<std::string, std::string> last;
  for (std::size_t i = 0; i + 1 < elements.size(); i += 2) {
    const std::string& field = elements[i].str;
    if (field == "format" && elements[i + 1].str != "1") return std::nullopt;  // rejected where met
    if (field == "soft_expiry_ms" || field == "hard_expiry_ms" || field == "load_time_ms") {
      if (!model_parse<std::int64_t>(elements[i + 1].str)) return std::nullopt;
    }
    if (field == "fence" && !model_parse<std::uint64_t>(elements[i + 1].str)) return std::nullopt;
    last[field] = elements[i + 1].str;
  }
  for (const char* required : {"format", "value", "soft_expiry_ms", "hard_expiry_ms", "fence"}) {
    if (!last.contains(required)) return std::nullopt;
  }
  RawEntry e;
  e.value = last["value"];
  e.soft_expiry_ms = *model_parse<std::int64_t>(last["soft_expiry_ms"]);
  e.hard_expiry_ms = *model_parse<std::int64_t>(last["hard_expiry_ms"]);
  if (last.contains("load_time_ms")) e.load_time_ms = *model_parse<std::int64_t>(last["load_time_ms"]);
  e.fence = *model_parse<std::uint64_t>(last["fence"]);
  return e;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  Reply reply;
  if (input.starts_with('!')) {
    reply.type = Reply::Type::status;
    reply.str = input.substr(1);
  } else {
    reply.type = Reply::Type::array;
    std::size_t start = 0;
    while (!input.empty() && start <= input.size()) {
      std::size_t end = input.find('\n', start);
      if (end == std::string_view::npos) end = input.size();
      const std::string_view text = input.substr(start, end - start);
      Reply element;
      if (text.starts_with('\x01')) {
        element.type = Reply::Type::integer;
        element.integer = static_cast<long long>(text.size());
      } else {
        element.type = Reply::Type::string;
        element.str = text;
      }
      reply.elements.push_back(std::move(element));
      start = end + 1;
    }
  }

  const bool is_array = reply.type == Reply::Type::array;
  const std::vector<Reply> elements = reply.elements;
  std::optional<RawEntry> got;
  bool codec_failed = false;
  try {
    got = stampede::redis::detail::decode_entry(std::move(reply));
  } catch (const stampede::codec_error&) {
    codec_failed = true;
  } catch (const stampede::backend_error&) {
    if (is_array) violation("backend_error for an array reply");
    return 0;
  }
  if (!is_array) violation("a non-array reply was not refused with backend_error");
  if (elements.empty()) {
    if (got || codec_failed) violation("the empty array is not std::nullopt");
    return 0;
  }
  if (!got && !codec_failed) violation("std::nullopt for a non-empty array");

  const std::optional<RawEntry> want = model_decode(elements);
  if (codec_failed) {
    if (want) violation("codec_error for a hash the wire format accepts");
    return 0;
  }
  if (!want) violation("accepted a hash the wire format refuses");
  if (got->value != want->value || got->soft_expiry_ms != want->soft_expiry_ms ||
      got->hard_expiry_ms != want->hard_expiry_ms || got->load_time_ms != want->load_time_ms ||
      got->fence != want->fence) {
    violation("decoded fields differ from the reference decoder");
  }
  try {
    (void)stampede::JsonCodec<Item>::decode(got->value);
  } catch (const stampede::codec_error&) {
    // the documented way to refuse a value
  }
  return 0;
}
