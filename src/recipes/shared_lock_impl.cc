#include "recipes/shared_lock_impl.h"

#include "base/text.h"
#include "etcd/lost_replies.h"
#include "keys/holder_value.h"
#include "keys/key_layout.h"
#include "queue/entry_removal.h"
#include "queue/queue_acquisition.h"

namespace etcdlock::detail {

SharedLockImpl::SharedLockImpl(std::shared_ptr<PrimitiveContext> context, std::string name, LockOptions options)
    : named_(std::move(context), "shared lock", std::move(name)), options_(options) {}

SharedLockImpl::~SharedLockImpl() {
  // No other reference exists, so no thread can be inside a member function.
  std::map<std::thread::id, ThreadHold> left;
  {
    MutexLock lock(mu_);
    left.swap(holds_);
  }
  for (auto& [thread, held] : left) {
    if (!held.hold->lost() && !named_.context->closed()) {
      named_.context->log()(LogLevel::warning, "shared lock destroyed while held; releasing it",
                            {{"name", named_.name}, {"key", held.hold->entry().key}});
    }
    std::error_code ignored;
    give_up(*held.hold, held.in_doubt, ignored);
  }
}

bool SharedLockImpl::acquire(Side side, SteadyTime deadline, std::stop_token cancel, QueueWait::Mode mode) {
  const auto me = std::this_thread::get_id();
  {
    MutexLock lock(mu_);
    named_.context->check_open();
    if (const auto found = holds_.find(me); found != holds_.end()) {
      ThreadHold& held = found->second;
      if (held.hold->lost()) {
        throw Error(errc::lock_expired, "the hold of shared lock " + quote_value(named_.name) +
                                            " was lost; unlock it before locking again");
      }
      if (side == Side::write && held.side == Side::read) {
        throw Error(errc::lock_already_held, "this thread holds shared lock " + quote_value(named_.name) +
                                                 " for reading; upgrading to writing is refused (it could wait "
                                                 "forever): unlock_shared() first");
      }
      if (side == Side::read && held.side == Side::write) {
        const auto hold = held.hold;
        try {
          downgrade(held);
        } catch (const Error&) {
          // A downgrade that lost its hold says so before it throws; loss
          // callbacks may run here, so with the mutex released.
          lock.unlock();
          hold->signal_loss_now();
          throw;
        }
        return true;
      }
      if (!options_.reentrant) {
        throw Error(errc::lock_already_held,
                    "shared lock " + quote_value(named_.name) + " is already held by this thread");
      }
      ++held.depth;
      return true;
    }
  }
  const auto suffix = named_.context->unique_key_suffix();
  const bool write = side == Side::write;
  QueueWait::Entry entry{named_.context->entry_value(side, 0,
                                                     /*with_inbox=*/false),
                         suffix,
                         write ? Admission::exclusive() : Admission::shared(),
                         {},
                         false};
  QueueAcquisition acquisition(
      named_.context, named_.queue, write ? "write lock" : "read lock", named_.name, std::move(entry),
      {options_.retry_interval, options_.max_retries, options_.max_retry_interval}, named_.counters);
  auto acquired = acquisition.run(deadline, cancel, mode);
  if (!acquired) return false;
  MutexLock lock(mu_);
  holds_[me] = ThreadHold{side, 1, std::move(acquired->hold), acquired->in_doubt};
  return true;
}

void SharedLockImpl::downgrade(ThreadHold& held) {
  if (held.depth != 1) {
    throw Error(errc::lock_already_held, "shared lock " + quote_value(named_.name) +
                                             " is held for writing more than once by this thread; unlock to one "
                                             "level before taking the read side");
  }
  const auto hold = held.hold;
  // The mutex is not held across a call to etcd. It is taken back also when
  // the call throws, so the caller's MutexLock still owns it afterwards.
  mu_.unlock();
  std::optional<bool> done;  // unknown until etcd answers
  std::optional<Error> failure;
  try {
    // The same key, so the same place in the queue; a reader now.
    auto txn = while_created_at(hold->entry().key, hold->entry().revision);
    auto* put = txn.add_success()->mutable_request_put();
    put->set_key(hold->entry().key);
    put->set_value(named_.context->entry_value(HolderValue::Side::read, 0, /*with_inbox=*/false));
    put->set_lease(hold->lease_id());
    done = named_.context->client()
               .txn(txn, named_.context->client().command_deadline(), etcd::write_site::downgrade)
               .succeeded();
  } catch (const etcd::LeaseNotFound&) {
    done = false;  // the lease is gone, and the entry with it
  } catch (const Error& error) {
    failure = error;
  }
  if (!done && failure && failure->value() == errc::unavailable) {
    // The put may have committed, letting readers in: the write side is
    // given up all the same, and so is the read side it asked for, which is
    // not ours unconfirmed. The hold is lost; its entry goes in the background.
    hold->lose(LossCause::unconfirmed);
    remove_entry(*named_.context, {hold->entry(), held.in_doubt}, hold->lease_id());
  }
  mu_.lock();
  if (failure) throw *failure;
  if (!*done) {
    hold->lose(LossCause::deleted);
    throw Error(errc::lock_expired, "the write hold of shared lock " + quote_value(named_.name) + " was lost");
  }
  held.side = Side::read;
}

void SharedLockImpl::give_up(Hold& hold, bool in_doubt, std::error_code& ec) noexcept {
  hold.give_up(
      [&] {
        auto txn = while_created_at(hold.entry().key, hold.entry().revision);
        txn.add_success()->mutable_request_delete_range()->set_key(hold.entry().key);
        const auto& client = named_.context->client();
        return client.queue_write(txn, etcd::write_site::release, client.command_deadline()).succeeded();
      },
      in_doubt, ec);
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
  give_up(*hold, in_doubt, ec);
  hold->signal_loss_now();  // with nothing held here: a loss callback may lock again
}

void SharedLockImpl::async_acquire(Side side, SteadyTime deadline, std::stop_token cancel, AsyncDone done) {
  const auto& context = named_.context;
  const bool write = side == Side::write;
  QueueWait::Entry entry{context->entry_value(side, 0, /*with_inbox=*/false),
                         context->unique_key_suffix(),
                         write ? Admission::exclusive() : Admission::shared(),
                         {},
                         false};
  AsyncAcquisition::Request request{
      .context = context,
      .kind = write ? "write lock" : "read lock",
      .name = named_.name,
      .retry = {options_.retry_interval, options_.max_retries, options_.max_retry_interval},
      .counters = named_.counters,
      .turns = {},  // each hold has its own entry: etcd's queue excludes them, no turn
      .owner = shared_from_this(),
      .deadline = deadline,
      .cancel = std::move(cancel),
  };
  AsyncAcquisition::start(
      std::move(request), named_.queue, std::move(entry),
      [self = shared_from_this(), write, done = std::move(done)](AsyncAcquisition::Outcome outcome) {
        if (!outcome.acquired()) return done(outcome.error, nullptr);
        auto state = std::make_shared<AsyncSharedHold>();
        state->lock = self;
        state->hold = std::move(outcome.hold());
        state->in_doubt = outcome.in_doubt;
        state->writing = write;
        done({}, std::move(state));
      });
}

void SharedLockImpl::release(AsyncSharedHold& state, std::error_code& ec) noexcept {
  ec.clear();
  if (state.released.exchange(true)) {
    ec = make_error_code(errc::lock_not_held);
    return;
  }
  give_up(*state.hold, state.in_doubt, ec);
  state.hold->signal_loss_now();
}

void SharedLockImpl::warn_not_held(std::string_view call) const noexcept {
  try {
    named_.context->log()(LogLevel::warning,
                          std::string(call) + " by a thread that does not hold that side of the lock; ignored",
                          {{"name", named_.name}});
  } catch (...) {  // a log line is not worth an exception out of unlock()
  }
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
