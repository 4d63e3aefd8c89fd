// stampede/detail/async_calls.hpp: the asynchronous calls pending on one Cache, so that the
// Cache's destructor can complete each of them and keep them from touching it afterwards.
//
// A pending call is registered (add) until it completes (remove). Each step of a call that uses
// the Cache holds a Use for as long as it does; the Cache's destructor closes the registry: it
// waits for the steps in progress, aborts every pending call (each completes with an error), and
// from then on every Use says the Cache is gone.
//
//   AsyncCalls::Use use = calls->use();
//   if (!use) return finish(cache_destroyed());   // the Cache is gone: do not touch it
//   cache.count(...);                              // safe until `use` goes
#pragma once

#include <memory>
#include <shared_mutex>
#include <vector>

#include "stampede/detail/thread_annotations.hpp"

namespace stampede::detail {

/// One pending asynchronous call, as the registry sees it.
class AsyncCall {
 public:
  /// @return an owning reference to the call, or null if it is being destroyed (close() holds it
  ///         while it aborts the call, so that the call cannot end under the registry's lock).
  virtual std::shared_ptr<AsyncCall> pin() noexcept = 0;
  /// Completes the call with an error saying that its Cache was destroyed. Called at most once,
  /// by AsyncCalls::close(), with the call pinned: it must only post work elsewhere.
  virtual void abort() noexcept = 0;

 protected:
  AsyncCall() = default;
  virtual ~AsyncCall() = default;
  AsyncCall(const AsyncCall&) = delete;
  AsyncCall& operator=(const AsyncCall&) = delete;

 private:
  friend class AsyncCalls;
  AsyncCall* prev_ = nullptr;
  AsyncCall* next_ = nullptr;
  bool listed_ = false;
};

/// Thread-safe. Shared by a Cache and its pending calls (it outlives the Cache while calls hold it).
class AsyncCalls {
 public:
  /// A step's right to use the Cache: true while the Cache lives; the Cache's destructor waits
  /// for it to go.
  class Use {
   public:
    explicit operator bool() const noexcept { return open_; }

   private:
    friend class AsyncCalls;
    Use(std::shared_lock<std::shared_mutex> lock, bool open) : lock_(std::move(lock)), open_(open) {}
    std::shared_lock<std::shared_mutex> lock_;
    bool open_;
  };

  [[nodiscard]] Use use() {
    std::shared_lock lock(closing_);
    const bool open = !closed_;
    return Use(std::move(lock), open);
  }

  /// Registers a pending call. @return false if the Cache is gone (the call must not start).
  [[nodiscard]] bool add(AsyncCall& call) {
    MutexLock l(mu_);
    if (closed_list_) return false;
    call.prev_ = nullptr;
    call.next_ = head_;
    if (head_ != nullptr) head_->prev_ = &call;
    head_ = &call;
    call.listed_ = true;
    return true;
  }
  /// Unregisters a call (it completed, or is being destroyed). Idempotent.
  void remove(AsyncCall& call) noexcept {
    MutexLock l(mu_);
    if (!call.listed_) return;
    if (call.prev_ != nullptr) call.prev_->next_ = call.next_;
    if (call.next_ != nullptr) call.next_->prev_ = call.prev_;
    if (head_ == &call) head_ = call.next_;
    call.prev_ = call.next_ = nullptr;
    call.listed_ = false;
  }

  /// The Cache is being destroyed: waits for the steps that use it, then aborts every pending
  /// call. Later Uses say the Cache is gone; later add()s fail. @throws std::bad_alloc.
  void close() {
    {
      std::unique_lock lock(closing_);
      closed_ = true;
    }
    // Pinned under the lock, aborted and let go outside it: a call whose last reference goes
    // here unregisters itself, which takes the lock.
    std::vector<std::shared_ptr<AsyncCall>> pending;
    {
      MutexLock l(mu_);
      closed_list_ = true;
      for (AsyncCall* c = head_; c != nullptr; c = c->next_) {
        if (std::shared_ptr<AsyncCall> pinned = c->pin()) pending.push_back(std::move(pinned));
      }
    }
    for (const std::shared_ptr<AsyncCall>& c : pending) c->abort();
  }

 private:
  std::shared_mutex closing_;
  bool closed_ = false;  // written under closing_ held exclusively, read under it shared
  Mutex mu_;
  AsyncCall* head_ STAMPEDE_GUARDED_BY(mu_) = nullptr;
  bool closed_list_ STAMPEDE_GUARDED_BY(mu_) = false;
};

}  // namespace stampede::detail
