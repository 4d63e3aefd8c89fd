#include "pubsub_reader.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <vector>

#include "stampede/errors.hpp"

namespace stampede::redis::detail {

PubSubEnd read_pubsub_until_lost(Connection& conn, int wake_fd, const ClientOptions& o,
                                 const std::function<bool()>& stopped,
                                 const std::function<void(const Reply&)>& dispatch, std::string& error,
                                 const PubSubTick& tick) {
  using steady = std::chrono::steady_clock;
  const std::chrono::milliseconds interval = o.keepalive_interval;
  const std::chrono::milliseconds answer_within =
      o.command_timeout.count() > 0 ? o.command_timeout : interval;
  const bool ticking = tick.interval.count() > 0 && tick.run;
  steady::time_point last_heard = steady::now();
  steady::time_point next_tick = last_heard + tick.interval;
  bool pinged = false;  // a PING is unanswered
  steady::time_point answer_due{};
  // What hiredis read together with the subscription's confirmation: poll() would not see it.
  try {
    for (const Reply& m : conn.take_buffered()) dispatch(m);
  } catch (const backend_error& e) {
    error = e.what();
    return PubSubEnd::lost;
  }
  for (;;) {
    int timeout_ms = -1;
    if (interval.count() > 0 || ticking) {
      steady::time_point due = steady::time_point::max();
      if (interval.count() > 0) due = pinged ? answer_due : last_heard + interval;
      if (ticking) due = std::min(due, next_tick);
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(due - steady::now()).count();
      timeout_ms = static_cast<int>(std::clamp<std::int64_t>(left, 0, 60'000));
    }
    pollfd fds[2] = {{conn.fd(), POLLIN, 0}, {wake_fd, POLLIN, 0}};
    if (::poll(fds, 2, timeout_ms) < 0) {
      if (errno == EINTR) continue;
      error = "poll failed";
      return PubSubEnd::lost;
    }
    if (fds[1].revents != 0) {
      char buf[16];
      while (::read(wake_fd, buf, sizeof buf) > 0) {
      }
      if (stopped()) return PubSubEnd::stopped;
    }
    if (fds[0].revents != 0) {
      std::vector<Reply> messages;
      try {
        messages = conn.read_available();
      } catch (const backend_error& e) {
        error = e.what();
        return PubSubEnd::lost;
      }
      last_heard = steady::now();
      pinged = false;  // anything from the server, a pong or a message, shows it is there
      for (const Reply& m : messages) dispatch(m);
    }
    if (ticking && steady::now() >= next_tick) {
      if (!tick.run(error)) return PubSubEnd::lost;
      next_tick = steady::now() + tick.interval;
    }
    if (interval.count() == 0) continue;
    const steady::time_point now = steady::now();
    if (pinged) {
      if (now >= answer_due) {
        error = "keepalive PING not answered within " + std::to_string(answer_within.count()) + " ms";
        return PubSubEnd::lost;
      }
    } else if (now >= last_heard + interval) {
      try {
        conn.send({"PING"});
      } catch (const backend_error& e) {
        error = e.what();
        return PubSubEnd::lost;
      }
      pinged = true;
      answer_due = now + answer_within;
    }
  }
}

}  // namespace stampede::redis::detail
