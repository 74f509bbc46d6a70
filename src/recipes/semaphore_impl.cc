#include "recipes/semaphore_impl.h"

#include "queue/entry_removal.h"
#include "queue/hand_over.h"
#include "keys/holder_value.h"
#include "keys/key_layout.h"
#include "queue/queue_acquisition.h"
#include "base/text.h"

namespace etcdlock::detail {

PermitHold::~PermitHold() {
  std::error_code ignored;
  release(ignored);
}

LockContext& PermitHold::hold_context() const { return semaphore_->context(); }

std::optional<pb::TxnRequest> PermitHold::guarded_txn() const {
  if (released_ || hold_->lost()) return std::nullopt;
  return while_created_at(hold_->entry().key, hold_->entry().revision);
}

void PermitHold::release(std::error_code& ec) noexcept {
  ec.clear();
  if (released_.exchange(true)) {
    ec = make_error_code(errc::lock_not_held);
    return;
  }
  semaphore_->release(*hold_, in_doubt_, ec);
}

SemaphoreImpl::SemaphoreImpl(std::shared_ptr<LockContext> context, std::string name, Options options)
    : context_(std::move(context)),
      name_(std::move(name)),
      counters_(context_->lock_counters().counters("semaphore", name_)),
      queue_{queue_dir(context_->prefix(), name_), prefix_range_end(queue_dir(context_->prefix(), name_))},
      options_(options) {}

void SemaphoreImpl::check_limits(const std::vector<std::string>& values) const {
  for (const auto& text : values) {
    const auto value = decode_holder_value(text);
    if (value && value->limit > 0 && value->limit != options_.limit) {
      throw Error(errc::invalid_argument, "semaphore " + quote_value(name_) + " is held in etcd with a limit of " +
                                              std::to_string(value->limit) + "; this process asked for a limit of " +
                                              std::to_string(options_.limit));
    }
  }
}

std::shared_ptr<PermitHold> SemaphoreImpl::acquire(SteadyTime deadline, std::stop_token cancel, QueueWait::Mode mode) {
  context_->check_open();
  QueueWait::Entry entry{context_->entry_value(HolderValue::Mode::none, options_.limit), context_->unique_key_suffix(),
                         Admission::counted(options_.limit),
                         [this](const std::vector<std::string>& values) { check_limits(values); }, true};
  QueueAcquisition acquisition(context_, queue_, "permit", name_, std::move(entry),
                               {options_.retry.retry_interval, options_.retry.max_retries,
                                options_.retry.max_retry_interval}, counters_);
  auto acquired = acquisition.run(deadline, cancel, mode);
  if (!acquired) return nullptr;
  if (acquired->waited) {
    MutexLock lock(mu_);
    expect_successor_ = true;
  }
  context_->log()(LogLevel::debug, "permit acquired", {{"name", name_}, {"key", acquired->hold->entry().key}});
  return std::make_shared<PermitHold>(shared_from_this(), std::move(acquired->hold), acquired->in_doubt);
}

void SemaphoreImpl::release(Hold& hold, bool in_doubt, std::error_code& ec) noexcept {
  bool expect_successor = false;
  {
    MutexLock lock(mu_);
    expect_successor = expect_successor_;
  }
  std::optional<Release> release;
  hold.give_up(
      [&] {
        release = release_and_hand_over(context_->client(), queue_, hold.entry(), options_.limit, expect_successor);
        return release->entry_was_there;
      },
      in_doubt, ec);
  if (release) {
    MutexLock lock(mu_);
    expect_successor_ = release->successor_seen;
  }
}

void SemaphoreImpl::keep(std::shared_ptr<PermitHold> permit) {
  MutexLock lock(mu_);
  kept_.push_back(std::move(permit));
}

bool SemaphoreImpl::release_kept(std::size_t count) {
  std::deque<std::shared_ptr<PermitHold>> released;
  {
    MutexLock lock(mu_);
    if (kept_.size() < count) return false;
    for (std::size_t i = 0; i < count; ++i) {
      released.push_back(std::move(kept_.front()));
      kept_.pop_front();
    }
  }
  for (auto& permit : released) {
    std::error_code ignored;
    permit->release(ignored);
  }
  return true;
}

std::size_t SemaphoreImpl::kept() const {
  MutexLock lock(mu_);
  return kept_.size();
}

}  // namespace etcdlock::detail
