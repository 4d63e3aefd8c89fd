#include "stampede/redis/near_cache.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "fd_identity.hpp"
#include "pubsub_reader.hpp"
#include "stampede/detail/random.hpp"
#include "stampede/detail/thread_annotations.hpp"
#include "stampede/errors.hpp"
#include "stampede/redis/connection.hpp"
#include "wire.hpp"

namespace stampede::redis {

void validate(const NearCacheOptions& options) {
  if (options.max_entries == 0) {
    throw std::invalid_argument("stampede::redis::NearCacheOptions.max_entries must be >= 1");
  }
  if (options.max_age.count() <= 0) {
    throw std::invalid_argument("stampede::redis::NearCacheOptions.max_age must be > 0");
  }
  if (options.db_check_interval.count() < 0) {
    throw std::invalid_argument("stampede::redis::NearCacheOptions.db_check_interval must be >= 0");
  }
}

namespace detail {
namespace {

constexpr std::string_view kInvalidateChannel = "__redis__:invalidate";
constexpr std::chrono::milliseconds kFirstBackoff{50};
constexpr std::chrono::milliseconds kMaxBackoff{1000};

}  // namespace

struct NearTracker::Impl {
  Impl(std::shared_ptr<Client> c, const std::string& prefix, NearTrackerSink& s,
       std::chrono::milliseconds check_interval)
      : client(std::move(c)),
        key_prefix(value_key(prefix, "")),
        marker_key(prefix + "db-marker"),
        db_check_interval(check_interval),
        sink(s) {
    key_prefix.pop_back();  // "{prefix}{": what every value key of this prefix starts with
    if (::pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) {
      throw backend_error("stampede::redis: cannot create a pipe for the near cache's tracker");
    }
    wake_ids[0] = FdIdentity(wake[0]);
    wake_ids[1] = FdIdentity(wake[1]);
    thread = std::thread([this] { run(); });
  }

  void stop() {
    {
      stampede::detail::MutexLock l(mu);
      stopped = true;
    }
    cv.notify_all();
    const char byte = 'x';
    [[maybe_unused]] ssize_t n = ::write(wake[1], &byte, 1);
    thread.join();
    ::close(wake[0]);
    ::close(wake[1]);
  }

  bool is_stopped() {
    stampede::detail::MutexLock l(mu);
    return stopped;
  }

  // Connects and sets tracking up on one connection. @throws backend_error.
  std::unique_ptr<Connection> connect() {
    std::unique_ptr<Connection> conn = client->open_connection();
    Reply id = conn->command({"CLIENT", "ID"});
    if (id.type != Reply::Type::integer) throw backend_error("CLIENT ID failed: " + id.str);
    const std::string own = std::to_string(id.integer);
    // BCAST with the value keys' prefix: every write to a value key of this prefix, by anyone, is
    // announced; lock and fence keys ({prefix}lock:{k}, {prefix}fence:{k}) do not match it.
    Reply t = conn->command({"CLIENT", "TRACKING", "on", "REDIRECT", own, "BCAST", "PREFIX", key_prefix});
    if (t.type != Reply::Type::status) throw backend_error("CLIENT TRACKING failed: " + t.str);
    Reply s = conn->command({"SUBSCRIBE", kInvalidateChannel});
    if (s.type != Reply::Type::array || s.elements.empty() || s.elements[0].str != "subscribe") {
      throw backend_error("SUBSCRIBE " + std::string(kInvalidateChannel) + " was not confirmed: " + s.str);
    }
    {
      stampede::detail::MutexLock l(mu);
      socket = FdIdentity(conn->fd());
    }
    if (db_check_interval.count() > 0) {
      // The database this epoch's copies will come from: read before tracking_established(), so
      // every read that fills the near cache is sent after it.
      // Its commands are bounded even when the client's command_timeout is 0 (no limit): a check
      // that hangs would stop the reader's keepalive too.
      const ClientOptions& o = client->options();
      const std::chrono::milliseconds limit = o.command_timeout.count() > 0      ? o.command_timeout
                                              : o.keepalive_interval.count() > 0 ? o.keepalive_interval
                                                                                 : db_check_interval;
      checker = Connection::open(client->endpoint(), o.connect_timeout, limit);
      {
        stampede::detail::MutexLock l(mu);
        checker_socket = FdIdentity(checker->fd());
      }
      marker = read_marker();
    }
    return conn;
  }

  // @return the token of the database marker, set first if there is none. @throws backend_error.
  std::string read_marker() {
    const std::string token = stampede::detail::random_token();
    Reply set = checker->command({"SET", marker_key, token, "NX"});
    if (set.type == Reply::Type::error) throw backend_error("SET " + marker_key + " failed: " + set.str);
    Reply get = checker->command({"GET", marker_key});
    if (get.type != Reply::Type::string) {
      throw backend_error("GET " + marker_key + " did not return the marker: " + get.str);
    }
    return get.str;
  }

  // The database check (every db_check_interval). @return false, with `error`, when it failed.
  bool check_database(std::string& error) {
    try {
      Reply r = checker->command({"GET", marker_key});
      if (r.type == Reply::Type::string && r.str == marker) return true;
      if (r.type == Reply::Type::error) throw backend_error("GET " + marker_key + " failed: " + r.str);
      // Another database (SWAPDB), or the marker was deleted: take the current token first, then
      // drop every copy, so that each copy inserted from now on was read after the token.
      marker = read_marker();
    } catch (const backend_error& e) {
      error = std::string("database check: ") + e.what();
      return false;
    }
    sink.invalidated_all("redis " + client->address() + ": the database changed under the near cache (" +
                         marker_key + " holds another token: SWAPDB?)");
    return true;
  }

  void run() {
    std::chrono::milliseconds backoff = kFirstBackoff;
    while (!is_stopped()) {
      std::unique_ptr<Connection> conn;
      std::string error;
      try {
        conn = connect();
      } catch (const std::exception& e) {
        error = e.what();
        stampede::detail::MutexLock l(mu);
        socket = FdIdentity();  // closed with the connection connect() was setting up
        checker_socket = FdIdentity();
      }
      if (!conn) checker.reset();
      if (conn) {
        backoff = kFirstBackoff;
        sink.tracking_established();
        const bool asked_to_stop = read_until_lost(*conn, error);
        {
          stampede::detail::MutexLock l(mu);
          socket = FdIdentity();
          checker_socket = FdIdentity();
        }
        conn.reset();
        checker.reset();
        if (asked_to_stop) return;
      }
      sink.tracking_lost("redis " + client->address() + ": near cache tracking connection: " +
                         (error.empty() ? std::string("lost") : error));
      stampede::detail::MutexLock l(mu);
      cv.wait_for(l, backoff, [this]() STAMPEDE_NO_THREAD_SAFETY_ANALYSIS { return stopped; });
      if (stopped) return;
      backoff = std::min(backoff * 2, kMaxBackoff);
    }
  }

  // Forwards invalidations until the connection is lost (EOF, I/O error, a keepalive PING not
  // answered in time: pubsub_reader.hpp) or the tracker stops. @return true when asked to stop.
  bool read_until_lost(Connection& conn, std::string& error) {
    PubSubTick tick;
    if (checker) {
      tick.interval = db_check_interval;
      tick.run = [this](std::string& e) { return check_database(e); };
    }
    return read_pubsub_until_lost(
               conn, wake[0], client->options(), [this] { return is_stopped(); },
               [this](const Reply& m) { dispatch(m); }, error, tick) == PubSubEnd::stopped;
  }

  // ["message", "__redis__:invalidate", [key...]] or, for FLUSHALL/FLUSHDB, a nil payload.
  void dispatch(const Reply& m) {
    if (m.type != Reply::Type::array || m.elements.size() != 3 || m.elements[0].str != "message" ||
        m.elements[1].str != kInvalidateChannel) {
      return;  // a keepalive's ["pong", ""]
    }
    const Reply& payload = m.elements[2];
    if (payload.is_nil()) {
      sink.invalidated_all("the server flushed its keys (FLUSHALL or FLUSHDB)");
      return;
    }
    auto one = [this](const std::string& k) {
      // "{prefix}{" key "}": the value key of cache key `key` (docs/wire-format.md).
      if (k.size() < key_prefix.size() + 1 || !k.starts_with(key_prefix) || !k.ends_with("}")) return;
      sink.invalidated(std::string_view(k).substr(key_prefix.size(), k.size() - key_prefix.size() - 1));
    };
    if (payload.type == Reply::Type::array) {
      for (const Reply& k : payload.elements) one(k.str);
    } else if (payload.type == Reply::Type::string) {
      one(payload.str);
    }
  }

  std::shared_ptr<Client> client;
  std::string key_prefix;
  std::string marker_key;  // "{prefix}db-marker"
  std::chrono::milliseconds db_check_interval;
  NearTrackerSink& sink;
  // The database check's connection and the marker's token: used by the thread only.
  std::unique_ptr<Connection> checker;
  std::string marker;
  stampede::detail::Mutex mu;
  std::condition_variable_any cv;
  bool stopped STAMPEDE_GUARDED_BY(mu) = false;
  FdIdentity socket STAMPEDE_GUARDED_BY(mu);
  FdIdentity checker_socket STAMPEDE_GUARDED_BY(mu);
  int wake[2] = {-1, -1};
  FdIdentity wake_ids[2];
  std::thread thread;
};

NearTracker::NearTracker(std::shared_ptr<Client> client, const std::string& prefix, NearTrackerSink& sink,
                         std::chrono::milliseconds db_check_interval)
    : impl_(new Impl(std::move(client), prefix, sink, db_check_interval)) {}

NearTracker::~NearTracker() {
  if (impl_ == nullptr) return;
  impl_->stop();
  delete impl_;
}

// Leaves the mutex locked on purpose, which the thread-safety analysis cannot follow.
void NearTracker::abandon_after_fork() noexcept STAMPEDE_NO_THREAD_SAFETY_ANALYSIS {
  if (impl_ == nullptr) return;
  if (impl_->mu.try_lock()) {
    impl_->socket.close_if_unchanged();
    impl_->checker_socket.close_if_unchanged();
  }
  impl_->wake_ids[0].close_if_unchanged();
  impl_->wake_ids[1].close_if_unchanged();
  stampede::detail::keep_abandoned(impl_);
  impl_ = nullptr;
}

}  // namespace detail
}  // namespace stampede::redis
