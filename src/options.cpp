#include "stampede/options.hpp"

#include <stdexcept>
#include <string>

namespace stampede {
namespace {

void require(bool ok, const char* field, const char* rule) {
  if (!ok) throw std::invalid_argument(std::string("stampede::CacheOptions.") + field + " " + rule);
}

// The fields that become expiries (or lock leases, or sleeps): a sum of them must fit the clocks.
void require_lifetime(std::chrono::milliseconds d, const char* field) {
  require(d <= kMaxLifetime, field, "must be <= 3650 days (kMaxLifetime)");
}

}  // namespace

void validate(const CacheOptions& o) {
  require_lifetime(o.ttl, "ttl");
  require_lifetime(o.soft_ttl, "soft_ttl");
  require_lifetime(o.swr_window, "swr_window");
  require_lifetime(o.lock_ttl, "lock_ttl");
  require_lifetime(o.poll_interval, "poll_interval");
  require_lifetime(o.negative_ttl, "negative_ttl");
  require_lifetime(o.fail_safe_max_age, "fail_safe_max_age");
  require_lifetime(o.fail_safe_throttle, "fail_safe_throttle");
  require(o.ttl.count() > 0, "ttl", "must be > 0");
  require(o.soft_ttl.count() > 0, "soft_ttl", "must be > 0");
  require(o.swr_window.count() >= 0, "swr_window", "must be >= 0");
  require(o.lock_ttl.count() > 0, "lock_ttl", "must be > 0");
  require(o.wait_timeout.count() > 0, "wait_timeout", "must be > 0");
  require(o.poll_interval.count() > 0, "poll_interval", "must be > 0");
  require(o.negative_ttl.count() >= 0, "negative_ttl", "must be >= 0");
  require(o.ttl_jitter >= 0.0 && o.ttl_jitter <= 1.0, "ttl_jitter", "must be in [0, 1]");
  require(o.early_refresh_beta >= 0.0, "early_refresh_beta", "must be >= 0");
  require(o.loader_soft_timeout.count() >= 0, "loader_soft_timeout", "must be >= 0");
  require(o.loader_hard_timeout.count() >= 0, "loader_hard_timeout", "must be >= 0");
  require(o.loader_hard_timeout.count() == 0 || o.loader_hard_timeout >= o.loader_soft_timeout,
          "loader_hard_timeout", "must be >= loader_soft_timeout (or 0 = off)");
  require(o.fail_safe_max_age.count() >= 0, "fail_safe_max_age", "must be >= 0");
  require(o.fail_safe_throttle.count() > 0, "fail_safe_throttle", "must be > 0");
  require(o.background_load_threads >= 1, "background_load_threads", "must be >= 1");
  require(o.refresh_threads >= 1, "refresh_threads", "must be >= 1");
  require(o.refresh_queue >= 1, "refresh_queue", "must be >= 1");
}

}  // namespace stampede
