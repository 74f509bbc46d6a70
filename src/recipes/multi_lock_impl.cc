#include "recipes/multi_lock_impl.h"

#include <algorithm>

#include "base/text.h"
#include "keys/key_layout.h"
#include "queue/guarded_write.h"

namespace etcdlock::detail {
namespace {

std::vector<std::string> names_of(const std::vector<std::shared_ptr<LockImpl>>& locks) {
  std::vector<std::string> names;
  for (const auto& lock : locks) names.push_back(lock->name());
  return names;
}

}  // namespace

MultiLockImpl::MultiLockImpl(std::shared_ptr<PrimitiveContext> context, std::vector<std::shared_ptr<LockImpl>> locks,
                             LockOptions options)
    : context_(std::move(context)), locks_(std::move(locks)), names_(names_of(locks_)), options_(options) {}

MultiLockImpl::~MultiLockImpl() {
  // No other reference exists, so no thread can be inside a member function.
  std::shared_ptr<MultiHold> hold;
  {
    MutexLock lock(mu_);
    hold = std::exchange(hold_, nullptr);
  }
  if (!hold) return;
  if (!hold->lost() && !context_->closed()) {
    context_->log()(LogLevel::warning, "multi-lock destroyed while held; releasing it", {{"name", description()}});
  }
  std::error_code ignored;
  hold->give_up(/*expect_successors=*/false, ignored);
  // The turns belong to the names' Locks, which may live on.
  give_back_turns();
}

std::string MultiLockImpl::description() const {
  std::string text = "multi-lock {";
  for (std::size_t i = 0; i < names_.size(); ++i) text += (i ? ", " : "") + quote_value(names_[i]);
  return text + "}";
}

bool MultiLockImpl::owns_every_turn() const {
  return std::ranges::all_of(locks_, [](const auto& lock) { return lock->exclusive().turn_owned_by_this_thread(); });
}

bool MultiLockImpl::acquire(SteadyTime deadline, std::stop_token cancel, Mode mode) {
  {
    MutexLock lock(mu_);
    context_->check_open();
    if (hold_ && owns_every_turn()) {
      if (!options_.reentrant) {
        throw Error(errc::lock_already_held, description() + " is already held by this thread");
      }
      if (hold_->lost()) {
        throw Error(errc::lock_expired, "the hold of " + description() + " was lost; unlock it before locking again");
      }
      ++depth_;
      return true;
    }
  }
  for (const auto& lock : locks_) {
    if (lock->exclusive().turn_owned_by_this_thread()) {
      // Waiting for it would wait for this very thread.
      throw Error(errc::lock_already_held, "lock " + quote_value(lock->name()) + " of " + description() +
                                               " is already held by this thread through another lock");
    }
  }
  if (!take_turns(deadline, cancel, mode)) return false;
  bool acquired = false;
  try {
    acquired = acquire_in_etcd(deadline, cancel, mode);
  } catch (...) {
    give_back_turns();
    throw;
  }
  if (!acquired) {
    give_back_turns();
    return false;
  }
  MutexLock lock(mu_);
  depth_ = 1;
  context_->log()(LogLevel::debug, "multi-lock acquired",
                  {{"name", description()}, {"fencing_token", std::to_string(hold_->revision())}});
  return true;
}

bool MultiLockImpl::take_turns(SteadyTime deadline, const std::stop_token& cancel, Mode mode) {
  // In the order of the names, as every multi-lock of this process: two
  // threads asking for overlapping sets cannot each wait for the other.
  std::size_t taken = 0;
  try {
    for (; taken < locks_.size(); ++taken) {
      if (!locks_[taken]->exclusive().take_turn(deadline, cancel, mode == Mode::wait)) break;
    }
  } catch (...) {
    while (taken > 0) locks_[--taken]->exclusive().give_back_turn();
    throw;
  }
  if (taken == locks_.size()) return true;
  while (taken > 0) locks_[--taken]->exclusive().give_back_turn();
  return false;
}

void MultiLockImpl::give_back_turns() noexcept {
  for (auto lock = locks_.rbegin(); lock != locks_.rend(); ++lock) (*lock)->exclusive().give_back_turn();
}

std::vector<MultiAcquisition::Queue> MultiLockImpl::queues() const {
  std::vector<MultiAcquisition::Queue> queues;
  for (const auto& lock : locks_) {
    const auto& named = lock->exclusive().named();
    queues.push_back({named.queue, named.name, named.counters});
  }
  return queues;
}

std::shared_ptr<MultiHold> MultiLockImpl::make_hold(std::vector<std::shared_ptr<Hold>> holds, bool in_doubt) const {
  std::vector<QueueDir> dirs;
  for (const auto& lock : locks_) dirs.push_back(lock->exclusive().named().queue);
  return std::make_shared<MultiHold>(context_, std::move(dirs), std::move(holds), in_doubt);
}

bool MultiLockImpl::acquire_in_etcd(SteadyTime deadline, const std::stop_token& cancel, Mode mode) {
  MultiAcquisition acquisition(context_, queues(), description(),
                               {options_.retry_interval, options_.max_retries, options_.max_retry_interval});
  auto acquired = acquisition.run(deadline, cancel, mode);
  if (!acquired) {
    MutexLock lock(mu_);
    last_keys_ = acquisition.keys();
    return false;
  }
  adopt(make_hold(std::move(acquired->holds), acquired->in_doubt), acquired->waited);
  return true;
}

void MultiLockImpl::adopt(std::shared_ptr<MultiHold> hold, bool waited) {
  MutexLock lock(mu_);
  last_keys_.clear();
  for (const auto& entry : hold->entries()) last_keys_.push_back(entry.key);
  hold_ = std::move(hold);
  if (waited) expect_successors_ = true;
  last_hold_lost_ = false;
}

void MultiLockImpl::release(std::error_code& ec) noexcept {
  ec.clear();
  std::shared_ptr<MultiHold> hold;
  bool expect_successors = false;
  {
    MutexLock lock(mu_);
    if (!hold_ || !owns_every_turn()) {
      ec = make_error_code(errc::lock_not_held);
      return;
    }
    if (--depth_ > 0) return;
    hold = std::exchange(hold_, nullptr);
    expect_successors = expect_successors_;
  }
  give_up(hold, expect_successors, ec);
}

void MultiLockImpl::give_up(const std::shared_ptr<MultiHold>& hold, bool expect_successors,
                            std::error_code& ec) noexcept {
  const bool successor_seen = hold->give_up(expect_successors, ec);
  if (!ec) context_->log()(LogLevel::debug, "multi-lock released", {{"name", description()}});
  {
    MutexLock lock(mu_);
    last_hold_lost_ = hold->lost();
    expect_successors_ = successor_seen;
  }
  give_back_turns();
  hold->signal_loss_now();  // with the turns given back: a loss callback may lock again
}

void MultiLockImpl::async_acquire(SteadyTime deadline, std::stop_token cancel, AsyncDone done) {
  std::vector<Turn*> turns;
  for (const auto& lock : locks_) turns.push_back(&lock->exclusive().turn());
  const RetryPolicy retry{options_.retry_interval, options_.max_retries, options_.max_retry_interval};
  AsyncAcquisition::Request request{
      .context = context_,
      .kind = "multi-lock",
      .name = names_.front(),  // as the blocking form's messages
      .retry = retry,
      .counters = nullptr,        // each name's hold counts for its lock, as the blocking form's
      .turns = std::move(turns),  // in the order of the sorted names, as every multi-lock of this process
      .owner = shared_from_this(),
      .deadline = deadline,
      .cancel = std::move(cancel),
  };
  auto attempt = std::make_unique<MultiAcquisition>(context_, queues(), description(), retry);
  AsyncAcquisition::start(std::move(request), std::move(attempt),
                          [self = shared_from_this(), done = std::move(done)](AsyncAcquisition::Outcome outcome) {
                            if (!outcome.acquired()) return done(outcome.error, nullptr);
                            auto state = std::make_shared<AsyncMultiLockHold>();
                            state->lock = self;
                            state->hold = self->make_hold(std::move(outcome.holds), outcome.in_doubt);
                            // The turns are ours (the acquisition kept them) until the MultiLockHold gives them up.
                            self->adopt(state->hold, outcome.waited);
                            self->context_->log()(LogLevel::debug, "multi-lock acquired",
                                                  {{"name", self->description()},
                                                   {"fencing_token", std::to_string(state->hold->revision())},
                                                   {"by", "asynchronous acquisition"}});
                            done({}, std::move(state));
                          });
}

void MultiLockImpl::release(AsyncMultiLockHold& state, std::error_code& ec) noexcept {
  ec.clear();
  if (state.released.exchange(true)) {
    ec = make_error_code(errc::lock_not_held);
    return;
  }
  bool expect_successors = false;
  {
    MutexLock lock(mu_);
    if (hold_ != state.hold) {  // cannot happen: the turns kept it this hold's
      ec = make_error_code(errc::lock_not_held);
      return;
    }
    hold_ = nullptr;
    expect_successors = expect_successors_;
  }
  give_up(state.hold, expect_successors, ec);
}

bool MultiLockImpl::holds(const AsyncMultiLockHold& state) const {
  MutexLock lock(mu_);
  return hold_ == state.hold && !state.hold->lost();
}

void MultiLockImpl::warn_handler_threw(std::string_view what) const noexcept {
  try {
    context_->log()(LogLevel::warning, "the handler of an asynchronous multi-lock threw; ignored",
                    {{"name", description()}, {"error", std::string(what)}});
  } catch (...) {  // nothing to report it to
  }
}

void MultiLockImpl::warn_not_held(std::string_view call) const noexcept {
  try {
    context_->log()(LogLevel::warning, std::string(call) + " by a thread that does not hold the multi-lock; ignored",
                    {{"name", description()}});
  } catch (...) {  // a log line is not worth an exception out of unlock()
  }
}

std::shared_ptr<MultiHold> MultiLockImpl::hold() const {
  MutexLock lock(mu_);
  return hold_;
}

bool MultiLockImpl::held() const {
  const auto current = hold();
  return current && !current->lost();
}

bool MultiLockImpl::held_by_this_thread() const { return held() && owns_every_turn(); }

std::vector<std::string> MultiLockImpl::keys() const {
  if (const auto current = hold()) {
    std::vector<std::string> keys;
    for (const auto& entry : current->entries()) keys.push_back(entry.key);
    return keys;
  }
  {
    MutexLock lock(mu_);
    if (!last_keys_.empty()) return last_keys_;
  }
  std::vector<std::string> keys;
  const auto session = context_->sessions().latest();
  for (const auto& lock : locks_) {
    const auto& dir = lock->exclusive().named().queue.dir;
    keys.push_back(session ? queue_key(dir, session->lease_id()) : dir);
  }
  return keys;
}

std::stop_token MultiLockImpl::lost_token() const {
  const auto current = hold();
  return current ? current->lost_token() : std::stop_token();
}

bool MultiLockImpl::lost() const {
  if (const auto current = hold()) return current->lost();
  MutexLock lock(mu_);
  return last_hold_lost_;
}

void MultiLockImpl::check_name(std::string_view name) const {
  if (std::ranges::find(names_, name) == names_.end()) {
    throw Error(errc::invalid_argument, "name " + quote_value(name) + " is not one of " + description());
  }
}

std::int64_t MultiLockImpl::fencing_token(std::string_view name) const {
  check_name(name);
  return fencing_token();
}

std::int64_t MultiLockImpl::fencing_token() const {
  const auto current = hold();
  return current && !current->lost() ? current->revision() : 0;
}

std::optional<pb::TxnRequest> MultiLockImpl::guarded_txn(const std::shared_ptr<MultiHold>& hold) {
  if (!hold || hold->lost()) return std::nullopt;
  return while_all_created_at(hold->entries());
}

bool MultiLockImpl::guarded_put(std::string_view key, std::string_view value) {
  return detail::guarded_put(context_->client(), guarded_txn(hold()), key, value);
}

bool MultiLockImpl::guarded_delete(std::string_view key) {
  return detail::guarded_delete(context_->client(), guarded_txn(hold()), key);
}

bool MultiLockImpl::guarded_put(const AsyncMultiLockHold& state, std::string_view key, std::string_view value) {
  return detail::guarded_put(context_->client(), guarded_txn(state.hold), key, value);
}

bool MultiLockImpl::guarded_delete(const AsyncMultiLockHold& state, std::string_view key) {
  return detail::guarded_delete(context_->client(), guarded_txn(state.hold), key);
}

}  // namespace etcdlock::detail
