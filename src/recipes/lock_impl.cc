#include "recipes/lock_impl.h"

#include "queue/hand_over.h"
#include "queue/guarded_write.h"
#include "keys/key_layout.h"
#include "queue/queue_acquisition.h"
#include "base/text.h"

namespace etcdlock::detail {

LockImpl::LockImpl(std::shared_ptr<LockContext> context, std::string name, LockOptions options)
    : context_(std::move(context)),
      name_(std::move(name)),
      counters_(context_->lock_counters().counters("lock", name_)),
      queue_{queue_dir(context_->prefix(), name_), prefix_range_end(queue_dir(context_->prefix(), name_))},
      options_(options),
      turn_(context_, "lock " + quote_value(name_)) {}

LockImpl::~LockImpl() {
  // No other reference exists, so no thread can be inside a member function.
  std::shared_ptr<Hold> hold;
  bool in_doubt = false;
  {
    MutexLock lock(mu_);
    hold = std::move(hold_);
    in_doubt = hold_in_doubt_;
  }
  if (!hold) return;
  if (!hold->lost() && !context_->closed()) {
    context_->log()(LogLevel::warning, "lock destroyed while held; releasing it",
                    {{"name", name_}, {"key", hold->entry().key}});
  }
  std::error_code ignored;
  release_in_etcd(*hold, in_doubt, ignored);
}

bool LockImpl::acquire(SteadyTime deadline, std::stop_token cancel, Mode mode) {
  {
    MutexLock lock(mu_);
    context_->check_open();
    if (hold_ && turn_.owned_by_this_thread()) {
      if (!options_.reentrant) {
        throw Error(errc::lock_already_held, "lock " + quote_value(name_) + " is already held by this thread");
      }
      if (hold_->lost()) {
        throw Error(errc::lock_expired,
                    "the hold of lock " + quote_value(name_) + " was lost; unlock it before locking again");
      }
      ++depth_;
      return true;
    }
  }
  if (!turn_.take(deadline, cancel, mode == Mode::wait)) {
    // Another thread of this process has it.
    if (counters_) ++(mode == Mode::try_once ? counters_->try_failures : counters_->timeouts);
    return false;
  }
  bool acquired = false;
  try {
    acquired = acquire_in_etcd(deadline, cancel, mode);
  } catch (...) {
    turn_.give_back();
    throw;
  }
  if (!acquired) {
    turn_.give_back();
    return false;
  }
  MutexLock lock(mu_);
  depth_ = 1;
  last_hold_lost_ = false;
  context_->log()(LogLevel::debug, "lock acquired",
                  {{"name", name_}, {"key", hold_->entry().key}, {"fencing_token", std::to_string(hold_->entry().revision)}});
  return true;
}

bool LockImpl::acquire_in_etcd(SteadyTime deadline, const std::stop_token& cancel, Mode mode) {
  QueueAcquisition acquisition(context_, queue_, "lock", name_,
                               {context_->entry_value(), "", Admission::exclusive(), {}, true},
                               {options_.retry_interval, options_.max_retries, options_.max_retry_interval}, counters_);
  auto acquired = acquisition.run(deadline, cancel, mode);
  MutexLock lock(mu_);
  last_key_ = acquisition.key();
  if (!acquired) return false;
  hold_ = std::move(acquired->hold);
  hold_in_doubt_ = acquired->in_doubt;
  expect_successor_ = acquired->waited || expect_successor_;
  return true;
}

void LockImpl::release(std::error_code& ec) noexcept {
  ec.clear();
  std::shared_ptr<Hold> hold;
  bool in_doubt = false;
  {
    MutexLock lock(mu_);
    if (!hold_ || !turn_.owned_by_this_thread()) {
      ec = make_error_code(errc::lock_not_held);
      return;
    }
    if (--depth_ > 0) return;
    hold = std::move(hold_);
    in_doubt = hold_in_doubt_;
  }
  release_in_etcd(*hold, in_doubt, ec);
  {
    MutexLock lock(mu_);
    last_hold_lost_ = hold->lost();
  }
  turn_.give_back();
}

void LockImpl::warn_not_held(std::string_view call) const noexcept {
  try {
    context_->log()(LogLevel::warning, std::string(call) + " by a thread that does not hold the lock; ignored",
                    {{"name", name_}});
  } catch (...) {  // a log line is not worth an exception out of unlock()
  }
}

void LockImpl::release_in_etcd(Hold& hold, bool in_doubt, std::error_code& ec) noexcept {
  bool expect_successor = false;
  {
    MutexLock lock(mu_);
    expect_successor = expect_successor_;
  }
  std::optional<Release> release;
  hold.give_up(
      [&] {
        release = release_and_hand_over(context_->client(), queue_, hold.entry(), 1, expect_successor);
        return release->entry_was_there;
      },
      in_doubt, ec);
  if (release) {
    MutexLock lock(mu_);
    expect_successor_ = release->successor_seen;
  }
  if (!ec) context_->log()(LogLevel::debug, "lock released", {{"name", name_}, {"key", hold.entry().key}});
}

bool LockImpl::held() const {
  MutexLock lock(mu_);
  return hold_ && !hold_->lost();
}

bool LockImpl::held_by_this_thread() const {
  MutexLock lock(mu_);
  return hold_ && !hold_->lost() && turn_.owned_by_this_thread();
}

std::string LockImpl::key() const {
  {
    MutexLock lock(mu_);
    if (hold_) return hold_->entry().key;
    if (!last_key_.empty()) return last_key_;
  }
  if (const auto session = context_->sessions().latest()) return queue_key(queue_.dir, session->lease_id());
  return queue_.dir;
}

std::stop_token LockImpl::lost_token() const {
  MutexLock lock(mu_);
  return hold_ ? hold_->lost_token() : std::stop_token();
}

bool LockImpl::lost() const {
  MutexLock lock(mu_);
  return hold_ ? hold_->lost() : last_hold_lost_;
}

std::int64_t LockImpl::fencing_token() const {
  MutexLock lock(mu_);
  return hold_ && !hold_->lost() ? hold_->entry().revision : 0;
}

std::optional<pb::TxnRequest> LockImpl::guarded_txn() const {
  MutexLock lock(mu_);
  if (!hold_ || hold_->lost()) return std::nullopt;
  return while_created_at(hold_->entry().key, hold_->entry().revision);
}

bool LockImpl::guarded_put(std::string_view key, std::string_view value) {
  return detail::guarded_put(context_->client(), guarded_txn(), key, value);
}

bool LockImpl::guarded_delete(std::string_view key) {
  return detail::guarded_delete(context_->client(), guarded_txn(), key);
}

}  // namespace etcdlock::detail
