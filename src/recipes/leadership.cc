#include "etcdlock/leadership.h"

#include "etcdlock/error.h"
#include "recipes/election_impl.h"

namespace etcdlock {

bool Leadership::is_leader() const {
  // Election::resign() ends the process's leadership, this one included.
  return state_ && !state_->hold->lost() && state_->election->exclusive().hold() == state_->hold;
}

bool Leadership::proclaim(std::string_view value) {
  if (!state_) throw Error(errc::lock_not_held, "proclaim() without a leadership");
  return is_leader() && state_->election->proclaim(*state_, value);
}

void Leadership::end_hold(std::shared_ptr<detail::AsyncLeadership> state, std::error_code& ec) noexcept {
  state->election->resign(*state, ec);
}

std::stop_token Leadership::lost_token() const { return state_ ? state_->hold->lost_token() : std::stop_token(); }
bool Leadership::lost() const { return state_ && state_->hold->lost(); }
std::int64_t Leadership::fencing_token() const { return is_leader() ? state_->hold->entry().revision : 0; }
std::string Leadership::name() const { return state_ ? state_->election->name() : std::string(); }
std::string Leadership::key() const { return state_ ? state_->hold->entry().key : std::string(); }

bool Leadership::guarded_put(std::string_view key, std::string_view value) {
  if (!state_) throw Error(errc::lock_not_held, "guarded_put() without a leadership");
  return state_->election->exclusive().guarded_put(*state_->hold, key, value);
}

bool Leadership::guarded_delete(std::string_view key) {
  if (!state_) throw Error(errc::lock_not_held, "guarded_delete() without a leadership");
  return state_->election->exclusive().guarded_delete(*state_->hold, key);
}

}  // namespace etcdlock
