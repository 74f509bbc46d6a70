#include "queue/exclusive_hold.h"

#include "base/text.h"
#include "queue/guarded_write.h"
#include "queue/queue_acquisition.h"

namespace etcdlock::detail {

ExclusiveHold::ExclusiveHold(std::shared_ptr<PrimitiveContext> context, std::string_view kind, std::string name,
                             std::string acquisition)
    : named_(std::move(context), kind, std::move(name)),
      acquisition_(std::move(acquisition)),
      turn_(*named_.context, kind, named_.name) {}

ExclusiveHold::Outcome ExclusiveHold::acquire(QueueWait::Entry entry, RetryPolicy retry, SteadyTime deadline,
                                              const std::stop_token& cancel, QueueWait::Mode mode) {
  QueueAcquisition acquisition(named_.context, named_.queue, acquisition_, named_.name, std::move(entry), retry,
                               named_.counters);
  auto acquired = acquisition.run(deadline, cancel, mode);
  Outcome outcome{acquired.has_value(), acquired && acquired->waited, acquisition.key()};
  if (acquired) {
    MutexLock lock(mu_);
    hold_ = std::move(acquired->hold);
    in_doubt_ = acquired->in_doubt;
  }
  return outcome;
}

void ExclusiveHold::async_acquire(QueueWait::Entry entry, RetryPolicy retry, std::shared_ptr<const void> owner,
                                  SteadyTime deadline, std::stop_token cancel, AsyncAcquisition::Done done) {
  AsyncAcquisition::Request request{
      .context = named_.context,
      .kind = acquisition_,
      .name = named_.name,
      .retry = retry,
      .counters = named_.counters,
      .turns = {&turn_},
      .owner = std::move(owner),
      .deadline = deadline,
      .cancel = std::move(cancel),
  };
  AsyncAcquisition::start(std::move(request), named_.queue, std::move(entry), std::move(done));
}

void ExclusiveHold::adopt(std::shared_ptr<Hold> hold, bool in_doubt) {
  MutexLock lock(mu_);
  hold_ = std::move(hold);
  in_doubt_ = in_doubt;
}

ExclusiveHold::Taken ExclusiveHold::take_if(const std::shared_ptr<Hold>& hold) {
  MutexLock lock(mu_);
  if (!hold || hold_ != hold) return {};
  return {std::exchange(hold_, nullptr), std::exchange(in_doubt_, false)};
}

ExclusiveHold::Taken ExclusiveHold::take() {
  MutexLock lock(mu_);
  return {std::exchange(hold_, nullptr), std::exchange(in_doubt_, false)};
}

std::shared_ptr<Hold> ExclusiveHold::hold() const {
  MutexLock lock(mu_);
  return hold_;
}

bool ExclusiveHold::held() const {
  MutexLock lock(mu_);
  return hold_ && !hold_->lost();
}

std::stop_token ExclusiveHold::lost_token() const {
  MutexLock lock(mu_);
  return hold_ ? hold_->lost_token() : std::stop_token();
}

std::int64_t ExclusiveHold::fencing_token() const {
  MutexLock lock(mu_);
  return hold_ && !hold_->lost() ? hold_->entry().revision : 0;
}

std::optional<pb::TxnRequest> ExclusiveHold::guarded_txn() const {
  MutexLock lock(mu_);
  if (!hold_ || hold_->lost()) return std::nullopt;
  return while_created_at(hold_->entry().key, hold_->entry().revision);
}

bool ExclusiveHold::guarded_put(std::string_view key, std::string_view value) {
  return detail::guarded_put(named_.context->client(), guarded_txn(), key, value);
}

bool ExclusiveHold::guarded_delete(std::string_view key) {
  return detail::guarded_delete(named_.context->client(), guarded_txn(), key);
}

bool ExclusiveHold::guarded_put(const Hold& hold, std::string_view key, std::string_view value) {
  return detail::guarded_put(named_.context->client(), while_standing(hold), key, value);
}

bool ExclusiveHold::guarded_delete(const Hold& hold, std::string_view key) {
  return detail::guarded_delete(named_.context->client(), while_standing(hold), key);
}

}  // namespace etcdlock::detail
