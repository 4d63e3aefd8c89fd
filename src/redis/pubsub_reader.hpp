// src/redis/pubsub_reader.hpp: the read loop of a subscribed connection, with its keepalive, shared
// by the Subscriber (lock wake-ups) and the near cache's tracker (invalidations).
//
//   std::string why;
//   if (read_pubsub_until_lost(conn, wake_fd, client->options(), stopped, dispatch, why) ==
//       PubSubEnd::lost) { reconnect(); }
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "stampede/redis/client.hpp"
#include "stampede/redis/connection.hpp"
#include "stampede/redis/reply.hpp"

namespace stampede::redis::detail {

enum class PubSubEnd { stopped, lost };

/// Work that a reader runs on its thread every `interval` while the connection lives (the near
/// cache's database check). An interval of 0 or an empty `run` = none.
struct PubSubTick {
  std::chrono::milliseconds interval{0};
  /// @return false, with the reason in `error`, to declare the connection lost.
  std::function<bool(std::string& error)> run;
};

/// Dispatches the messages of a subscribed connection until it is lost or the caller stops it.
/// A connection that has received nothing for `o.keepalive_interval` (0 = never) is PINGed (allowed
/// while subscribed; the answer is a "pong" array, which `dispatch` sees and may ignore); if nothing
/// arrives within `o.command_timeout` after that (or keepalive_interval when that is 0), it is
/// declared lost: a network cut or a stopped server that sent no RST.
///
/// Replies that hiredis read together with the subscription's confirmation (they are in its
/// buffer, no longer in the socket) are dispatched first, before waiting for the socket; so is
/// every reply of each later read.
///
/// @param wake_fd the read end of a non-blocking pipe: when it becomes readable it is drained and
///        `stopped()` is asked whether to return.
/// @param tick run every tick.interval (none by default).
/// @param error on PubSubEnd::lost, why (an I/O error, EOF, the unanswered PING).
/// @return PubSubEnd::stopped when `stopped()` said so, PubSubEnd::lost when the connection failed.
/// Runs on the calling thread (the connection's reader thread); throws nothing of its own.
PubSubEnd read_pubsub_until_lost(Connection& conn, int wake_fd, const ClientOptions& o,
                                 const std::function<bool()>& stopped,
                                 const std::function<void(const Reply&)>& dispatch, std::string& error,
                                 const PubSubTick& tick = {});

}  // namespace stampede::redis::detail
