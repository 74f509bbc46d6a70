#include "recipes/election_impl.h"

#include "etcd/lost_replies.h"
#include "queue/guarded_write.h"
#include "keys/key_layout.h"
#include "observe/leader_observer.h"
#include "queue/queue_acquisition.h"
#include "base/text.h"

namespace etcdlock::detail {

ElectionImpl::ElectionImpl(std::shared_ptr<LockContext> context, std::string name, ElectionOptions options)
    : context_(std::move(context)),
      name_(std::move(name)),
      counters_(context_->lock_counters().counters("election", name_)),
      queue_{queue_dir(context_->prefix(), name_), prefix_range_end(queue_dir(context_->prefix(), name_))},
      options_(options),
      turn_(context_, "election " + quote_value(name_)) {}

ElectionImpl::~ElectionImpl() {
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
    context_->log()(LogLevel::warning, "election destroyed while leading; resigning",
                    {{"name", name_}, {"key", hold->entry().key}});
  }
  end_leadership(*hold, in_doubt);
}

bool ElectionImpl::campaign(std::string_view value, SteadyTime deadline, std::stop_token cancel) {
  std::shared_ptr<Hold> lost;
  bool in_doubt = false;
  {
    MutexLock lock(mu_);
    context_->check_open();
    if (hold_ && turn_.owned_by_this_thread()) {
      if (!hold_->lost()) {
        lock.unlock();
        // Leading already: as etcd's Go Election, campaigning again proclaims.
        if (proclaim(value)) return true;
        lock.lock();
      }
      lost = std::exchange(hold_, nullptr);
      in_doubt = hold_in_doubt_;
    }
  }
  if (lost) {
    // The leadership is lost: acknowledge it, and campaign anew.
    end_leadership(*lost, in_doubt);
    turn_.give_back();
  }
  if (!turn_.take(deadline, cancel, /*wait=*/true)) return false;
  std::optional<QueueAcquisition::Acquired> acquired;
  try {
    QueueAcquisition acquisition(context_, queue_, "leadership", name_,
                                 {std::string(value), "", Admission::exclusive(), {}, false},
                                 {options_.retry_interval, options_.max_retries, options_.max_retry_interval}, counters_);
    acquired = acquisition.run(deadline, cancel, QueueWait::Mode::wait);
  } catch (...) {
    turn_.give_back();
    throw;
  }
  if (!acquired) {
    turn_.give_back();
    return false;
  }
  MutexLock lock(mu_);
  hold_ = std::move(acquired->hold);
  hold_in_doubt_ = acquired->in_doubt;
  context_->log()(LogLevel::info, "elected", {{"name", name_}, {"key", hold_->entry().key}});
  return true;
}

bool ElectionImpl::proclaim(std::string_view value) {
  std::shared_ptr<Hold> hold;
  {
    MutexLock lock(mu_);
    context_->check_open();
    if (!hold_ || hold_->lost()) return false;
    hold = hold_;
  }
  auto txn = while_created_at(hold->entry().key, hold->entry().revision);
  auto* put = txn.add_success()->mutable_request_put();
  put->set_key(hold->entry().key);
  put->set_value(std::string(value));
  put->set_lease(hold->lease_id());
  bool still_leader = false;
  try {
    still_leader =
        context_->client().txn(txn, context_->client().command_deadline(), etcd::write_site::proclaim).succeeded();
  } catch (const etcd::LeaseNotFound&) {
    // The lease is gone, and the leader's key with it.
  }
  if (!still_leader) hold->lose(LossCause::deleted);
  return still_leader;
}

void ElectionImpl::resign() noexcept {
  std::shared_ptr<Hold> hold;
  bool in_doubt = false;
  {
    MutexLock lock(mu_);
    if (!hold_) return;
    // From here on this process does not lead, whatever etcd answers.
    hold = std::exchange(hold_, nullptr);
    in_doubt = hold_in_doubt_;
  }
  const std::error_code ec = end_leadership(*hold, in_doubt);
  if (!ec) context_->log()(LogLevel::info, "resigned", {{"name", name_}, {"key", hold->entry().key}});
  turn_.give_back();
}

std::error_code ElectionImpl::end_leadership(Hold& hold, bool in_doubt) noexcept {
  std::error_code ec;
  hold.give_up(
      [&] {
        auto txn = while_created_at(hold.entry().key, hold.entry().revision);
        txn.add_success()->mutable_request_delete_range()->set_key(hold.entry().key);
        return context_->client().txn(txn, context_->client().command_deadline(), etcd::write_site::resign).succeeded();
      },
      in_doubt, ec);
  return ec;
}

bool ElectionImpl::is_leader() const {
  MutexLock lock(mu_);
  return hold_ && !hold_->lost();
}

std::stop_token ElectionImpl::lost_token() const {
  MutexLock lock(mu_);
  return hold_ ? hold_->lost_token() : std::stop_token();
}

std::int64_t ElectionImpl::fencing_token() const {
  MutexLock lock(mu_);
  return hold_ && !hold_->lost() ? hold_->entry().revision : 0;
}

std::optional<pb::TxnRequest> ElectionImpl::guarded_txn() const {
  MutexLock lock(mu_);
  if (!hold_ || hold_->lost()) return std::nullopt;
  return while_created_at(hold_->entry().key, hold_->entry().revision);
}

bool ElectionImpl::guarded_put(std::string_view key, std::string_view value) {
  return detail::guarded_put(context_->client(), guarded_txn(), key, value);
}

bool ElectionImpl::guarded_delete(std::string_view key) {
  return detail::guarded_delete(context_->client(), guarded_txn(), key);
}

std::optional<LeaderInfo> ElectionImpl::leader() const {
  context_->check_open();
  auto range = queue_range(queue_);
  range.set_keys_only(false);
  range.set_limit(kQueuePage);
  const auto response = context_->client().range(range, context_->client().command_deadline());
  for (const auto& kv : response.kvs()) {
    if (is_queue_entry(queue_.dir, kv.key())) return LeaderInfo{kv.key(), kv.value(), kv.lease(), kv.create_revision()};
  }
  return std::nullopt;
}

std::shared_ptr<LeaderObserver> ElectionImpl::observe(std::function<void(const std::optional<LeaderInfo>&)> on_change) {
  context_->check_open();
  auto observer = std::make_shared<LeaderObserver>(context_, queue_, std::move(on_change));
  observer->start();
  return observer;
}

}  // namespace etcdlock::detail
