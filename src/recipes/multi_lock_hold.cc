#include "etcdlock/multi_lock_hold.h"

#include "etcdlock/error.h"
#include "recipes/multi_lock_impl.h"

namespace etcdlock {

bool MultiLockHold::held() const { return state_ && state_->lock->holds(*state_); }

void MultiLockHold::end_hold(std::shared_ptr<detail::AsyncMultiLockHold> state, std::error_code& ec) noexcept {
  state->lock->release(*state, ec);
}

std::stop_token MultiLockHold::lost_token() const { return state_ ? state_->hold->lost_token() : std::stop_token(); }
bool MultiLockHold::lost() const { return state_ && state_->hold->lost(); }
std::int64_t MultiLockHold::fencing_token() const { return held() ? state_->hold->revision() : 0; }

std::int64_t MultiLockHold::fencing_token(std::string_view name) const {
  if (state_) state_->lock->check_name(name);
  return fencing_token();
}

std::vector<std::string> MultiLockHold::names() const {
  return state_ ? state_->lock->names() : std::vector<std::string>();
}

std::vector<std::string> MultiLockHold::keys() const {
  std::vector<std::string> keys;
  if (state_) {
    for (const auto& entry : state_->hold->entries()) keys.push_back(entry.key);
  }
  return keys;
}

bool MultiLockHold::guarded_put(std::string_view key, std::string_view value) {
  if (!state_) throw Error(errc::lock_not_held, "guarded_put() without a hold");
  return state_->lock->guarded_put(*state_, key, value);
}

bool MultiLockHold::guarded_delete(std::string_view key) {
  if (!state_) throw Error(errc::lock_not_held, "guarded_delete() without a hold");
  return state_->lock->guarded_delete(*state_, key);
}

}  // namespace etcdlock
