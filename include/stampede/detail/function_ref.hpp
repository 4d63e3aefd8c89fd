// stampede/detail/function_ref.hpp: FunctionRef<R(Args...)>, a non-owning reference to a callable.
//
// What a virtual function takes when it calls back into its caller's lambda: no allocation and no
// copy of the callable, unlike std::function.
//
//   void each(FunctionRef<void(int)> fn) { fn(1); fn(2); }
//   int sum = 0;
//   each([&](int i) { sum += i; });
#pragma once

#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

namespace stampede::detail {

template <class Signature>
class FunctionRef;

/// Refers to a callable for the duration of a call. Lifetime: the callable must outlive every
/// call through the reference (pass it down, never store it). Thread-safety: that of the callable.
template <class R, class... Args>
class FunctionRef<R(Args...)> {
 public:
  // Implicit, so a lambda converts at the call. The constraint keeps a FunctionRef's own copies
  // away from it, which the check below does not see in a requires-clause.
  template <class F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, FunctionRef> && std::is_invocable_r_v<R, F&, Args...>)
  // NOLINTNEXTLINE(google-explicit-constructor,bugprone-forwarding-reference-overload)
  FunctionRef(F&& f) noexcept
      : object_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* object, Args... args) -> R {
          return std::invoke(*static_cast<std::remove_reference_t<F>*>(object), std::forward<Args>(args)...);
        }) {}

  R operator()(Args... args) const { return call_(object_, std::forward<Args>(args)...); }

 private:
  void* object_;
  R (*call_)(void*, Args...);
};

}  // namespace stampede::detail
