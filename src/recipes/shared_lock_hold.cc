#include "etcdlock/shared_lock_hold.h"

#include "etcdlock/error.h"
#include "queue/guarded_write.h"
#include "recipes/shared_lock_impl.h"

namespace etcdlock {
bool SharedLockHold::held() const { return state_ && !state_->hold->lost(); }
bool SharedLockHold::writing() const { return state_ && state_->writing; }

void SharedLockHold::end_hold(std::shared_ptr<detail::AsyncSharedHold> state, std::error_code& ec) noexcept {
  state->lock->release(*state, ec);
}

std::stop_token SharedLockHold::lost_token() const { return state_ ? state_->hold->lost_token() : std::stop_token(); }
bool SharedLockHold::lost() const { return state_ && state_->hold->lost(); }
std::int64_t SharedLockHold::fencing_token() const { return held() ? state_->hold->entry().revision : 0; }
std::string SharedLockHold::name() const { return state_ ? state_->lock->name() : std::string(); }
std::string SharedLockHold::key() const { return state_ ? state_->hold->entry().key : std::string(); }

bool SharedLockHold::guarded_put(std::string_view key, std::string_view value) {
  if (!state_) throw Error(errc::lock_not_held, "guarded_put() without a hold");
  return detail::guarded_put(state_->lock->context().client(), detail::while_standing(*state_->hold), key, value);
}

bool SharedLockHold::guarded_delete(std::string_view key) {
  if (!state_) throw Error(errc::lock_not_held, "guarded_delete() without a hold");
  return detail::guarded_delete(state_->lock->context().client(), detail::while_standing(*state_->hold), key);
}

}  // namespace etcdlock
