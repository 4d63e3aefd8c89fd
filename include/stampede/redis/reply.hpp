// stampede/redis/reply.hpp: Reply, one answer of the server, and reply_error, an error answer.
//
// A Reply is copied out of hiredis, so it outlives the connection that read it; an error reply
// surfaces as reply_error from Client, whose code() is the server's first word.
//
//   stampede::redis::Reply r = client->command({"HGETALL", "k"});
//   for (std::size_t i = 0; i + 1 < r.elements.size(); i += 2) use(r.elements[i].str, r.elements[i + 1].str);
//   try { client->command({"HGET", "a-string", "f"}); } catch (const stampede::redis::reply_error& e) {
//   e.code(); }
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "stampede/errors.hpp"
#include "stampede/redis/export.hpp"

struct redisReply;  // hiredis, kept out of the public headers

namespace stampede::redis {

/// One reply of the server. A plain value.
struct Reply {
  enum class Type { nil, string, integer, array, status, error };
  Type type = Type::nil;
  std::string str;              ///< string, status and error replies
  long long integer = 0;        ///< integer replies
  std::vector<Reply> elements;  ///< array replies
  [[nodiscard]] bool is_nil() const noexcept { return type == Type::nil; }
};

/// The server answered a command with an error reply (e.g. WRONGTYPE, NOAUTH, a Lua error).
/// The connection stays usable; the message is the server's.
class STAMPEDE_REDIS_EXPORT reply_error : public backend_error {
 public:
  explicit reply_error(const std::string& what, std::string server_message)
      : backend_error(what), server_message_(std::move(server_message)) {}
  /// @return the server's message, e.g. "WRONGTYPE Operation against a key holding ...".
  [[nodiscard]] const std::string& server_message() const noexcept { return server_message_; }
  /// @return the first word of the server's message, e.g. "WRONGTYPE", "NOSCRIPT", "ERR".
  [[nodiscard]] std::string code() const;

 private:
  std::string server_message_;
};

namespace detail {
/// @return a copy of a hiredis reply and its elements (hiredis's unknown types read as nil).
Reply from_hiredis(const redisReply& reply);
}  // namespace detail

}  // namespace stampede::redis
