#include "recipes/lock_impl.h"

#include "base/text.h"
#include "keys/key_layout.h"

namespace etcdlock::detail {

LockImpl::LockImpl(std::shared_ptr<PrimitiveContext> context, std::string name, LockOptions options)
    : options_(options),
      exclusive_(std::move(context), "lock", std::move(name), "lock"),
      releaser_(exclusive_.named(), 1) {}

LockImpl::~LockImpl() {
  // No other reference exists, so no thread can be inside a member function.
  auto [hold, in_doubt] = exclusive_.take();
  if (!hold) return;
  if (!hold->lost() && !exclusive_.context().closed()) {
    exclusive_.context().log()(LogLevel::warning, "lock destroyed while held; releasing it",
                               {{"name", name()}, {"key", hold->entry().key}});
  }
  std::error_code ignored;
  release_in_etcd(*hold, in_doubt, ignored);
}

bool LockImpl::acquire(SteadyTime deadline, std::stop_token cancel, Mode mode) {
  {
    MutexLock lock(mu_);
    exclusive_.context().check_open();
    if (exclusive_.turn_owned_by_this_thread()) {
      if (const auto hold = exclusive_.hold()) {
        if (!options_.reentrant) {
          throw Error(errc::lock_already_held, "lock " + quote_value(name()) + " is already held by this thread");
        }
        if (hold->lost()) {
          throw Error(errc::lock_expired,
                      "the hold of lock " + quote_value(name()) + " was lost; unlock it before locking again");
        }
        ++depth_;
        return true;
      }
      // The turn without the hold: a MultiLock of this thread holds the name.
      throw Error(errc::lock_already_held,
                  "lock " + quote_value(name()) + " is already held by this thread through a multi-lock");
    }
  }
  if (!exclusive_.take_turn(deadline, cancel, mode == Mode::wait)) {
    // Another thread of this process has it.
    if (const auto& counters = exclusive_.named().counters) {
      ++(mode == Mode::try_once ? counters->try_failures : counters->timeouts);
    }
    return false;
  }
  bool acquired = false;
  try {
    acquired = acquire_in_etcd(deadline, cancel, mode);
  } catch (...) {
    exclusive_.give_back_turn();
    throw;
  }
  if (!acquired) {
    exclusive_.give_back_turn();
    return false;
  }
  MutexLock lock(mu_);
  depth_ = 1;
  last_hold_lost_ = false;
  const auto hold = exclusive_.hold();
  exclusive_.context().log()(
      LogLevel::debug, "lock acquired",
      {{"name", name()}, {"key", hold->entry().key}, {"fencing_token", std::to_string(hold->entry().revision)}});
  return true;
}

bool LockImpl::acquire_in_etcd(SteadyTime deadline, const std::stop_token& cancel, Mode mode) {
  auto outcome = exclusive_.acquire({exclusive_.context().entry_value(), "", Admission::exclusive(), {}, true},
                                    {options_.retry_interval, options_.max_retries, options_.max_retry_interval},
                                    deadline, cancel, mode);
  // A successor is likely after a wait: the release reads the queue first.
  if (outcome.waited) releaser_.expect_successor();
  MutexLock lock(mu_);
  remember_key(outcome.held ? std::string() : std::move(outcome.key));
  return outcome.held;
}

void LockImpl::release(std::error_code& ec) noexcept {
  ec.clear();
  {
    MutexLock lock(mu_);
    if (!exclusive_.turn_owned_by_this_thread() || !exclusive_.hold()) {
      ec = make_error_code(errc::lock_not_held);
      return;
    }
    if (--depth_ > 0) return;
    remember_key(exclusive_.hold()->entry().key);
  }
  auto [hold, in_doubt] = exclusive_.take();
  release_in_etcd(*hold, in_doubt, ec);
  {
    MutexLock lock(mu_);
    last_hold_lost_ = hold->lost();
  }
  exclusive_.give_back_turn();
  hold->signal_loss_now();  // with the turn given back: a loss callback may lock again
}

void LockImpl::async_acquire(SteadyTime deadline, std::stop_token cancel, AsyncDone done) {
  QueueWait::Entry entry{exclusive_.context().entry_value(), "", Admission::exclusive(), {}, true};
  exclusive_.async_acquire(std::move(entry),
                           {options_.retry_interval, options_.max_retries, options_.max_retry_interval},
                           shared_from_this(), deadline, std::move(cancel),
                           [self = shared_from_this(), done = std::move(done)](AsyncAcquisition::Outcome outcome) {
                             self->async_acquired(std::move(outcome), done);
                           });
}

void LockImpl::async_acquired(AsyncAcquisition::Outcome outcome, const AsyncDone& done) {
  if (!outcome.acquired()) {
    {
      MutexLock lock(mu_);
      if (!outcome.key.empty()) remember_key(std::move(outcome.key));
    }
    return done(outcome.error, nullptr);
  }
  {
    // The turn is ours (the acquisition kept it): the hold is this lock's
    // until the LockHold gives it up.
    if (outcome.waited) releaser_.expect_successor();
    exclusive_.adopt(outcome.hold(), outcome.in_doubt);
    MutexLock lock(mu_);
    remember_key({});
    last_hold_lost_ = false;
    exclusive_.context().log()(LogLevel::debug, "lock acquired",
                               {{"name", name()},
                                {"key", outcome.hold()->entry().key},
                                {"fencing_token", std::to_string(outcome.hold()->entry().revision)},
                                {"by", "asynchronous acquisition"}});
  }
  auto state = std::make_shared<AsyncLockHold>();
  state->lock = shared_from_this();
  state->hold = std::move(outcome.hold());
  done({}, std::move(state));
}

void LockImpl::release(AsyncLockHold& state, std::error_code& ec) noexcept {
  ec.clear();
  if (state.released.exchange(true)) {
    ec = make_error_code(errc::lock_not_held);
    return;
  }
  {
    MutexLock lock(mu_);
    remember_key(state.hold->entry().key);
  }
  auto [hold, in_doubt] = exclusive_.take_if(state.hold);
  if (!hold) {  // cannot happen: the turn kept it this hold's
    ec = make_error_code(errc::lock_not_held);
    return;
  }
  release_in_etcd(*hold, in_doubt, ec);
  {
    MutexLock lock(mu_);
    last_hold_lost_ = hold->lost();
  }
  exclusive_.give_back_turn();
  hold->signal_loss_now();  // with the turn given back: a loss callback may lock again
}

void LockImpl::warn_not_held(std::string_view call) const noexcept {
  try {
    exclusive_.context().log()(
        LogLevel::warning, std::string(call) + " by a thread that does not hold the lock; ignored", {{"name", name()}});
  } catch (...) {  // a log line is not worth an exception out of unlock()
  }
}

void LockImpl::release_in_etcd(Hold& hold, bool in_doubt, std::error_code& ec) noexcept {
  releaser_.release(hold, in_doubt, ec);
  if (!ec) exclusive_.context().log()(LogLevel::debug, "lock released", {{"name", name()}, {"key", hold.entry().key}});
}

void LockImpl::warn_handler_threw(std::string_view what) const noexcept {
  try {
    exclusive_.context().log()(LogLevel::warning, "the handler of an asynchronous lock threw; ignored",
                               {{"name", name()}, {"error", std::string(what)}});
  } catch (...) {  // nothing to report it to
  }
}

void LockImpl::remember_key(std::string key) {
  last_key_ = std::move(key);
  last_key_.shrink_to_fit();  // an empty one gives its memory back
}

std::string LockImpl::key() const {
  if (const auto hold = exclusive_.hold()) return hold->entry().key;
  {
    MutexLock lock(mu_);
    if (!last_key_.empty()) return last_key_;
  }
  const auto& named = exclusive_.named();
  if (const auto session = named.context->sessions().latest()) return queue_key(named.queue.dir, session->lease_id());
  return named.queue.dir;
}

bool LockImpl::lost() const {
  if (const auto hold = exclusive_.hold()) return hold->lost();
  MutexLock lock(mu_);
  return last_hold_lost_;
}

}  // namespace etcdlock::detail
