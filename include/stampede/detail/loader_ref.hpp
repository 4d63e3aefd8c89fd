// stampede/detail/loader_ref.hpp: LoaderRef<T>, the caller's loader as Cache<T>'s miss path sees it.
//
// The miss path (the flight, the lock, fail-safe, loader timeouts, fallbacks) takes this one
// type instead of the loader's own, so it is compiled once per T rather than once per loader: a
// program with a hundred call sites of one Cache<T> compiles its miss path once, and a build can
// instantiate a Cache<T> in one file (`extern template`) for every other file to share.
//
//   auto loader = [] { return 42; };
//   detail::LoaderRef<int> ref(loader);
//   LoadContext context;
//   int v = ref(context);                            // calls loader()
//   detail::OwnedLoader<int> owned = ref.copy();     // outlives `loader`
#pragma once

#include <concepts>
#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

#include "stampede/call.hpp"

namespace stampede::detail {

/// Calls `loader` with `context` if it takes a LoadContext& (preferred when both work), else with
/// no arguments; the result is converted to T.
template <class T, class F>
T invoke_loader(F& loader, LoadContext& context) {
  if constexpr (std::invocable<F&, LoadContext&>) {
    return std::invoke(loader, context);
  } else {
    return std::invoke(loader);
  }
}

/// A loader owned by a load that outlives its caller (a background load, a refresh). Move-only.
/// Thread-safety: that of the loader.
template <class T>
class OwnedLoader {
 public:
  /// @return an owned copy of `loader` (moved from, for an rvalue).
  template <class F>
  static OwnedLoader make(F&& loader) {
    using Value = std::decay_t<F>;
    return OwnedLoader(
        new Value(std::forward<F>(loader)), [](void* object) { delete static_cast<Value*>(object); },
        [](void* object, LoadContext& context) -> T {
          return invoke_loader<T>(*static_cast<Value*>(object), context);
        });
  }

  T operator()(LoadContext& context) { return call_(object_.get(), context); }

 private:
  OwnedLoader(void* object, void (*destroy)(void*), T (*call)(void*, LoadContext&)) noexcept
      : object_(object, destroy), call_(call) {}

  std::unique_ptr<void, void (*)(void*)> object_;
  T (*call_)(void*, LoadContext&);
};

/// Refers to a loader for the duration of a call, without copying it. Lifetime: the loader must
/// outlive every use of the reference; copy() makes an owned one for a load that outlives the call.
/// Thread-safety: that of the loader.
template <class T>
class LoaderRef {
 public:
  template <class F>
    requires(!std::is_same_v<std::remove_cv_t<F>, LoaderRef>)
  explicit LoaderRef(F& loader) noexcept
      : object_(const_cast<void*>(static_cast<const void*>(std::addressof(loader)))),
        call_([](void* object, LoadContext& context) -> T {
          return invoke_loader<T>(*static_cast<F*>(object), context);
        }),
        copy_(copy_of<F>()) {}

  T operator()(LoadContext& context) const { return call_(object_, context); }

  /// False for a loader that cannot be copied (it can only run while its caller waits).
  [[nodiscard]] bool copyable() const noexcept { return copy_ != nullptr; }

  /// An owned copy of the loader. Precondition: copyable().
  [[nodiscard]] OwnedLoader<T> copy() const { return copy_(object_); }

 private:
  template <class F>
  static constexpr auto copy_of() noexcept -> OwnedLoader<T> (*)(void*) {
    if constexpr (std::is_copy_constructible_v<std::remove_cv_t<F>>) {
      return [](void* object) { return OwnedLoader<T>::make(*static_cast<F*>(object)); };
    } else {
      return nullptr;
    }
  }

  void* object_;
  T (*call_)(void*, LoadContext&);
  OwnedLoader<T> (*copy_)(void*);
};

}  // namespace stampede::detail
