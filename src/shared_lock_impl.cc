#include "shared_lock_impl.h"

#include <cstdio>

#include "etcd/lost_replies.h"
#include "entry_removal.h"
#include "holder_value.h"
#include "key_layout.h"
#include "queue_acquisition.h"
#include "text.h"

namespace etcdlock::detail {

SharedLockImpl::SharedLockImpl(std::shared_ptr<LockContext> context, std::string name, LockOptions options)
    : context_(std::move(context)),
      name_(std::move(name)),
      counters_(context_->lock_counters().counters("shared lock", name_)),
      queue_{queue_dir(context_->prefix(), name_), prefix_range_end(queue_dir(context_->prefix(), name_))},
      options_(options),
      fence_(fence_key_base(context_->prefix(), name_)) {}

SharedLockImpl::~SharedLockImpl() {
  // No other reference exists, so no thread can be inside a member function.
  std::map<std::thread::id, ThreadHold> left;
  {
    MutexLock lock(mu_);
    left.swap(holds_);
  }
  for (auto& [thread, held] : left) {
    held.hold->finish();
    if (held.hold->lost() || context_->closed()) continue;
    context_->log()(LogLevel::warning, "shared lock destroyed while held; releasing it",
                    {{"name", name_}, {"key", held.hold->entry().key}});
    remove(*held.hold, held.in_doubt);
  }
}

bool SharedLockImpl::acquire(Side side, SteadyTime deadline, std::stop_token cancel, QueueWait::Mode mode) {
  const auto me = std::this_thread::get_id();
  {
    MutexLock lock(mu_);
    context_->check_open();
    if (const auto found = holds_.find(me); found != holds_.end()) {
      ThreadHold& held = found->second;
      if (held.hold->lost()) {
        throw Error(errc::lock_expired, "the hold of shared lock " + quote_value(name_) +
                                            " was lost; unlock it before locking again");
      }
      if (side == Side::write && held.side == Side::read) {
        throw Error(errc::lock_already_held, "this thread holds shared lock " + quote_value(name_) +
                                                 " for reading; upgrading to writing is refused (it could wait "
                                                 "forever): unlock_shared() first");
      }
      if (side == Side::read && held.side == Side::write) {
        downgrade(held);
        return true;
      }
      if (!options_.reentrant) {
        throw Error(errc::lock_already_held, "shared lock " + quote_value(name_) + " is already held by this thread");
      }
      ++held.depth;
      return true;
    }
  }
  char suffix[24];
  std::snprintf(suffix, sizeof suffix, "-%llx", static_cast<unsigned long long>(next_entry_++));
  const bool write = side == Side::write;
  QueueWait::Entry entry{context_->entry_value(write ? HolderValue::Mode::write : HolderValue::Mode::read, 0,
                                               /*with_inbox=*/false),
                         suffix, write ? Admission::exclusive() : Admission::shared(), {}, false};
  QueueAcquisition acquisition(
      context_, queue_, fence_, write ? "write lock" : "read lock", name_, std::move(entry),
      {options_.retry_interval, options_.max_retries},
      [this](const QueueWait::Leftover& leftover, std::int64_t lease_id) {
        remove_entry(*context_, fence_, leftover, lease_id, [] {});  // its own key: nothing waits for it
      },
      counters_);
  auto acquired = acquisition.run(deadline, cancel, mode);
  if (!acquired) return false;
  MutexLock lock(mu_);
  holds_[me] = ThreadHold{side, 1, std::move(acquired->hold), acquired->in_doubt};
  return true;
}

void SharedLockImpl::downgrade(ThreadHold& held) {
  if (held.depth != 1) {
    throw Error(errc::lock_already_held, "shared lock " + quote_value(name_) +
                                             " is held for writing more than once by this thread; unlock to one "
                                             "level before taking the read side");
  }
  const auto hold = held.hold;
  // The mutex is not held across a call to etcd. It is taken back also when
  // the call throws, so the caller's MutexLock still owns it afterwards.
  mu_.unlock();
  bool done = false;
  try {
    // The same key, so the same place in the queue; a reader now.
    auto txn = while_created_at(hold->entry().key, hold->entry().revision);
    auto* put = txn.add_success()->mutable_request_put();
    put->set_key(hold->entry().key);
    put->set_value(context_->entry_value(HolderValue::Mode::read, 0, /*with_inbox=*/false));
    put->set_lease(hold->lease_id());
    done = context_->client().txn(txn, context_->client().command_deadline(), etcd::write_site::downgrade).succeeded();
  } catch (...) {
    mu_.lock();
    throw;
  }
  mu_.lock();
  if (!done) {
    hold->lose(LossCause::deleted);
    throw Error(errc::lock_expired, "the write hold of shared lock " + quote_value(name_) + " was lost");
  }
  held.side = Side::read;
}

bool SharedLockImpl::remove(const Hold& hold, bool in_doubt) {
  try {
    auto txn = while_created_at(hold.entry().key, hold.entry().revision);
    txn.add_success()->mutable_request_delete_range()->set_key(hold.entry().key);
    const bool was_there =
        context_->client().txn(txn, context_->client().command_deadline(), etcd::write_site::release).succeeded();
    if (in_doubt) remove_entry(*context_, fence_, {hold.entry(), true}, hold.lease_id(), [] {});
    return was_there;
  } catch (const Error&) {
    remove_entry(*context_, fence_, {hold.entry(), in_doubt}, hold.lease_id(), [] {});
    return true;
  }
}

void SharedLockImpl::release(Side side, std::error_code& ec) noexcept {
  ec.clear();
  std::shared_ptr<Hold> hold;
  bool in_doubt = false;
  {
    MutexLock lock(mu_);
    const auto found = holds_.find(std::this_thread::get_id());
    if (found == holds_.end() || found->second.side != side) {
      ec = make_error_code(errc::lock_not_held);
      return;
    }
    if (--found->second.depth > 0) return;
    hold = std::move(found->second.hold);
    in_doubt = found->second.in_doubt;
    holds_.erase(found);
  }
  hold->finish();
  if (hold->lost()) ec = make_error_code(errc::lock_expired);
  if (!context_->closed() && !remove(*hold, in_doubt) && !hold->lost()) {
    hold->lose(LossCause::deleted, /*even_if_finished=*/true);
    ec = make_error_code(errc::lock_expired);
  }
  hold->signal_loss_now();
}

bool SharedLockImpl::held_by_this_thread(Side side) const {
  MutexLock lock(mu_);
  const auto found = holds_.find(std::this_thread::get_id());
  return found != holds_.end() && found->second.side == side && !found->second.hold->lost();
}

std::stop_token SharedLockImpl::lost_token() const {
  MutexLock lock(mu_);
  const auto found = holds_.find(std::this_thread::get_id());
  return found != holds_.end() ? found->second.hold->lost_token() : std::stop_token();
}

std::int64_t SharedLockImpl::fencing_token() const {
  MutexLock lock(mu_);
  const auto found = holds_.find(std::this_thread::get_id());
  return found != holds_.end() && !found->second.hold->lost() ? found->second.hold->entry().revision : 0;
}

std::optional<pb::TxnRequest> SharedLockImpl::guarded_txn() const {
  MutexLock lock(mu_);
  const auto found = holds_.find(std::this_thread::get_id());
  if (found == holds_.end() || found->second.hold->lost()) return std::nullopt;
  return while_created_at(found->second.hold->entry().key, found->second.hold->entry().revision);
}

}  // namespace etcdlock::detail
