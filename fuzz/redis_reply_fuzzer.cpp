// fuzz/redis_reply_fuzzer.cpp: stampede::redis::detail::from_hiredis, the conversion of every
// hiredis reply the Client returns, on arbitrary reply trees.
//
// Input: the first byte picks how the tree is made from the rest.
//   even: the rest is fed to hiredis's own protocol reader (RESP as the server sends it, possibly
//         several replies, possibly cut short); each reply it completes is converted.
//   odd:  the rest describes a tree built here (FuzzedDataProvider): any reply type number,
//         including ones this hiredis does not define (later hiredis versions add RESP3 types),
//         strings of any bytes, integers of any value, arrays nested up to 8 deep.
//
// Checked: the conversion never crashes or reads outside the tree (ASan, UBSan), and the Reply
// mirrors the tree: strings, statuses and errors keep their bytes, integers their value, arrays
// their elements in order; a nil or unknown type is nil with no string and no elements.
//
//   build/fuzz/fuzz/redis_reply_fuzzer fuzz/corpus/redis_reply_fuzzer -max_total_time=60
#include <fuzzer/FuzzedDataProvider.h>
#include <hiredis/hiredis.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "stampede/redis/reply.hpp"

namespace {

using stampede::redis::Reply;

[[noreturn]] void violation(const char* what) {
  std::fprintf(stderr, "redis_reply_fuzzer: invariant violated: %s\n", what);
  std::abort();
}

void check_mirror(const redisReply& r, const Reply& out) {
  auto same_bytes = [&] { return out.str == std::string_view(r.str, r.len); };
  switch (r.type) {
    case REDIS_REPLY_STRING:
      if (out.type != Reply::Type::string || !same_bytes()) violation("a string reply changed");
      break;
    case REDIS_REPLY_STATUS:
      if (out.type != Reply::Type::status || !same_bytes()) violation("a status reply changed");
      break;
    case REDIS_REPLY_ERROR:
      if (out.type != Reply::Type::error || !same_bytes()) violation("an error reply changed");
      break;
    case REDIS_REPLY_INTEGER:
      if (out.type != Reply::Type::integer || out.integer != r.integer) violation("an integer reply changed");
      break;
    case REDIS_REPLY_ARRAY:
      if (out.type != Reply::Type::array || out.elements.size() != r.elements) {
        violation("an array reply changed its length");
      }
      for (std::size_t i = 0; i < r.elements; ++i) check_mirror(*r.element[i], out.elements[i]);
      break;
    default:
      if (out.type != Reply::Type::nil || !out.str.empty() || !out.elements.empty()) {
        violation("a nil or unknown reply type is not a plain nil");
      }
      break;
  }
}

void convert_and_check(const redisReply& r) { check_mirror(r, stampede::redis::detail::from_hiredis(r)); }

// A reply tree built from fuzz bytes; owns every node, string and element vector.
class Tree {
 public:
  explicit Tree(FuzzedDataProvider& in) : in_(in) {}

  redisReply* build(int depth) {
    auto node = std::make_unique<redisReply>();
    redisReply* r = node.get();
    nodes_.push_back(std::move(node));
    r->type = in_.ConsumeIntegralInRange<int>(0, 16);  // 1..6 are defined; the others are unknown
    r->integer = 0;
    r->len = 0;
    r->str = nullptr;
    r->elements = 0;
    r->element = nullptr;
    switch (r->type) {
      case REDIS_REPLY_STRING:
      case REDIS_REPLY_STATUS:
      case REDIS_REPLY_ERROR: {
        strings_.push_back(in_.ConsumeRandomLengthString(256));
        std::string& s = strings_.back();
        r->str = s.data();
        r->len = s.size();
        break;
      }
      case REDIS_REPLY_INTEGER:
        r->integer = in_.ConsumeIntegral<long long>();
        break;
      case REDIS_REPLY_ARRAY: {
        const std::size_t n = depth >= 8 ? 0 : in_.ConsumeIntegralInRange<std::size_t>(0, 16);
        if (n == 0) break;
        auto children = std::make_unique<redisReply*[]>(n);
        for (std::size_t i = 0; i < n; ++i) children[i] = build(depth + 1);
        r->element = children.get();
        r->elements = n;
        arrays_.push_back(std::move(children));
        break;
      }
      default:
        // Unknown types (later hiredis: double, bool, map, set, push, ...) may carry a string
        // or elements; the conversion must read neither.
        if (in_.ConsumeBool()) {
          strings_.push_back(in_.ConsumeRandomLengthString(64));
          r->str = strings_.back().data();
          r->len = strings_.back().size();
        }
        break;
    }
    return r;
  }

 private:
  FuzzedDataProvider& in_;
  std::vector<std::unique_ptr<redisReply>> nodes_;
  std::deque<std::string> strings_;  // a deque: growing it moves no string the tree points into
  std::vector<std::unique_ptr<redisReply*[]>> arrays_;
};

// @return true if some '*' or '$' in `text` is followed by a count above 4096. hiredis's reader
// allocates an array of the declared length before any element arrives ("*5000000000\r\n" asks
// for 40 GB): the server is trusted with that, the fuzzer must not be.
bool declares_a_huge_length(std::string_view text) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '*' && text[i] != '$') continue;
    std::size_t n = 0, j = i + 1;
    for (; j < text.size() && text[j] >= '0' && text[j] <= '9' && n <= 4096; ++j) {
      n = n * 10 + static_cast<std::size_t>(text[j] - '0');
    }
    if (n > 4096) return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  if (data[0] % 2 == 0) {
    if (declares_a_huge_length(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1))) return 0;
    redisReader* reader = redisReaderCreate();
    if (reader == nullptr) return 0;
    if (redisReaderFeed(reader, reinterpret_cast<const char*>(data + 1), size - 1) == REDIS_OK) {
      for (;;) {
        void* reply = nullptr;
        if (redisReaderGetReply(reader, &reply) != REDIS_OK || reply == nullptr) break;
        convert_and_check(*static_cast<redisReply*>(reply));
        freeReplyObject(reply);
      }
    }
    redisReaderFree(reader);
    return 0;
  }
  FuzzedDataProvider in(data + 1, size - 1);
  Tree tree(in);
  convert_and_check(*tree.build(0));
  return 0;
}
