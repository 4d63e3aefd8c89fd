#include "stampede/redis/token_lock.hpp"

#include <stdexcept>
#include <utility>

#include "stampede/detail/fork.hpp"
#include "stampede/detail/random.hpp"
#include "subscriber.hpp"
#include "wire.hpp"

namespace stampede::redis {

RedisTokenLock::RedisTokenLock(std::shared_ptr<Client> client, std::string prefix)
    : client_(std::move(client)), prefix_(std::move(prefix)) {
  if (!client_) throw std::invalid_argument("stampede::redis::RedisTokenLock: client must not be null");
  detail::check_prefix(prefix_);
  subscriber_.store(new detail::Subscriber(client_, prefix_), std::memory_order_release);
}

RedisTokenLock::~RedisTokenLock() {
  detail::Subscriber* s = subscriber_.load(std::memory_order_acquire);
  if (s->generation() == stampede::detail::fork_generation()) {
    delete s;
  } else {
    s->abandon_after_fork();  // a child that never subscribed
  }
}

detail::Subscriber& RedisTokenLock::subscriber() {
  detail::Subscriber* s = subscriber_.load(std::memory_order_acquire);
  const std::uint64_t generation = stampede::detail::fork_generation();
  if (s->generation() == generation) [[likely]] {
    return *s;
  }
  // A fork()ed child: its own connection and reader thread; the parent's are abandoned.
  auto fresh = std::make_unique<detail::Subscriber>(client_, prefix_);
  if (subscriber_.compare_exchange_strong(s, fresh.get(), std::memory_order_acq_rel,
                                          std::memory_order_acquire)) {
    s->abandon_after_fork();
    return *fresh.release();
  }
  return *s;  // another thread of the child replaced it first (`fresh` is joined and freed)
}

std::optional<LockToken> RedisTokenLock::do_try_acquire(std::string_view key, std::chrono::milliseconds ttl) {
  std::string token = stampede::detail::random_token();
  const std::optional<std::uint64_t> fence = detail::acquire_lock(*client_, prefix_, key, token, ttl);
  if (!fence) return std::nullopt;
  return LockToken{std::move(token), *fence};
}

bool RedisTokenLock::do_release(std::string_view key, std::string_view token) {
  return detail::release_lock(*client_, prefix_, key, token);
}

bool RedisTokenLock::do_renew(std::string_view key, std::string_view token, std::chrono::milliseconds ttl) {
  return detail::renew_lock(*client_, prefix_, key, token, ttl);
}

std::uint64_t RedisTokenLock::do_bump_fence(std::string_view key) {
  return detail::bump_fence(*client_, prefix_, key);
}

std::unique_ptr<Subscription> RedisTokenLock::do_subscribe(std::string_view key) {
  return subscriber().subscribe(key);
}

void RedisTokenLock::do_notify(std::string_view key) { detail::publish(*client_, prefix_, key, "stored"); }

std::optional<std::string> RedisTokenLock::holder(std::string_view key) {
  check_key(key);
  Reply r = client_->command({"GET", detail::lock_key(prefix_, key)});
  if (r.type != Reply::Type::string) return std::nullopt;
  return std::move(r.str);
}

}  // namespace stampede::redis
