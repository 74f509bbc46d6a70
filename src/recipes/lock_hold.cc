#include "etcdlock/lock_hold.h"

#include "etcdlock/error.h"
#include "recipes/lock_impl.h"

namespace etcdlock {

bool LockHold::held() const {
  return state_ && !state_->hold->lost() && state_->lock->exclusive().hold() == state_->hold;
}

void LockHold::end_hold(std::shared_ptr<detail::AsyncLockHold> state, std::error_code& ec) noexcept {
  state->lock->release(*state, ec);
}

std::stop_token LockHold::lost_token() const { return state_ ? state_->hold->lost_token() : std::stop_token(); }
bool LockHold::lost() const { return state_ && state_->hold->lost(); }
std::int64_t LockHold::fencing_token() const { return held() ? state_->hold->entry().revision : 0; }
std::string LockHold::name() const { return state_ ? state_->lock->name() : std::string(); }
std::string LockHold::key() const { return state_ ? state_->hold->entry().key : std::string(); }

bool LockHold::guarded_put(std::string_view key, std::string_view value) {
  if (!state_) throw Error(errc::lock_not_held, "guarded_put() without a hold");
  return state_->lock->exclusive().guarded_put(*state_->hold, key, value);
}

bool LockHold::guarded_delete(std::string_view key) {
  if (!state_) throw Error(errc::lock_not_held, "guarded_delete() without a hold");
  return state_->lock->exclusive().guarded_delete(*state_->hold, key);
}

}  // namespace etcdlock
