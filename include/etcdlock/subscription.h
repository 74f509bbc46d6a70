// Subscription: a registration of a callback, ended when the object goes.
#pragma once

#include <functional>
#include <utility>

namespace etcdlock {

// Returned by LockManager::subscribe() and LockManager::watch(). Destroying
// it, or cancel(), ends the calls: once it returns, none runs (unless it is
// called from the callback itself). Movable.
class Subscription {
 public:
  Subscription() = default;
  explicit Subscription(std::function<void()> cancel) : cancel_(std::move(cancel)) {}
  Subscription(Subscription&& other) noexcept : cancel_(std::exchange(other.cancel_, nullptr)) {}
  Subscription& operator=(Subscription&& other) noexcept {
    if (this != &other) {
      cancel();
      cancel_ = std::exchange(other.cancel_, nullptr);
    }
    return *this;
  }
  ~Subscription() { cancel(); }

  void cancel() noexcept {
    if (auto cancel = std::exchange(cancel_, nullptr)) cancel();
  }

 private:
  std::function<void()> cancel_;
};

}  // namespace etcdlock
