// The ownership that every hold object (LockHold, MultiLockHold,
// SharedLockHold, Permit, Leadership) has alike, written once: move-only,
// ended when destroyed or assigned over, and an end that reports
// errc::lock_not_held when nothing is held.
#pragma once

#include <memory>
#include <system_error>
#include <utility>

#include "etcdlock/error.h"

namespace etcdlock::detail {

// Derived (which befriends this class) provides
//   static void end_hold(std::shared_ptr<State> state, std::error_code& ec) noexcept;
// which ends the hold whose shared state it is given (ec cleared), the
// object already empty: so a loss callback or handler that runs meanwhile
// sees nothing held here.
template <class Derived, class State>
class OwnedHold {
 public:
  // Holds, lost or not (until ended).
  explicit operator bool() const noexcept { return state_ != nullptr; }

 protected:
  OwnedHold() = default;
  explicit OwnedHold(std::shared_ptr<State> state) noexcept : state_(std::move(state)) {}
  OwnedHold(OwnedHold&& other) noexcept = default;
  // Ends what this object held first.
  OwnedHold& operator=(OwnedHold&& other) noexcept {
    if (this != &other) {
      end();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  ~OwnedHold() { end(); }

  void end() noexcept {
    std::error_code ignored;
    end(ignored);
  }
  void end(std::error_code& ec) noexcept {
    ec.clear();
    if (!state_) {
      ec = make_error_code(errc::lock_not_held);
      return;
    }
    Derived::end_hold(std::exchange(state_, nullptr), ec);
  }

  std::shared_ptr<State> state_;
};

}  // namespace etcdlock::detail
