#include "recipes/semaphore_impl.h"

#include <deque>

#include "base/text.h"
#include "keys/holder_value.h"
#include "keys/key_layout.h"
#include "queue/entry_removal.h"
#include "queue/hand_over.h"
#include "queue/queue_acquisition.h"

namespace etcdlock::detail {

PermitHold::~PermitHold() {
  std::error_code ignored;
  release(ignored);
}

PrimitiveContext& PermitHold::hold_context() const { return semaphore_->context(); }

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

SemaphoreImpl::SemaphoreImpl(std::shared_ptr<PrimitiveContext> context, std::string name, Options options)
    : named_(std::move(context), "semaphore", std::move(name)), options_(options), releaser_(named_, options_.limit) {}

void SemaphoreImpl::check_limits(const std::vector<std::string>& values) const {
  for (const auto& text : values) {
    const auto value = decode_holder_value(text);
    if (value && value->limit > 0 && value->limit != options_.limit) {
      throw Error(errc::invalid_argument, "semaphore " + quote_value(named_.name) +
                                              " is held in etcd with a limit of " + std::to_string(value->limit) +
                                              "; this process asked for a limit of " + std::to_string(options_.limit));
    }
  }
}

std::shared_ptr<PermitHold> SemaphoreImpl::acquire(SteadyTime deadline, std::stop_token cancel, QueueWait::Mode mode) {
  named_.context->check_open();
  QueueWait::Entry entry{named_.context->entry_value(HolderValue::Side::none, options_.limit),
                         named_.context->unique_key_suffix(), Admission::counted(options_.limit),
                         [this](const std::vector<std::string>& values) { check_limits(values); }, true};
  QueueAcquisition acquisition(
      named_.context, named_.queue, "permit", named_.name, std::move(entry),
      {options_.retry.retry_interval, options_.retry.max_retries, options_.retry.max_retry_interval}, named_.counters);
  auto acquired = acquisition.run(deadline, cancel, mode);
  if (!acquired) return nullptr;
  if (acquired->waited) releaser_.expect_successor();
  named_.context->log()(LogLevel::debug, "permit acquired",
                        {{"name", named_.name}, {"key", acquired->hold->entry().key}});
  return std::make_shared<PermitHold>(shared_from_this(), std::move(acquired->hold), acquired->in_doubt);
}

void SemaphoreImpl::async_acquire(SteadyTime deadline, std::stop_token cancel, AsyncDone done) {
  const auto& context = named_.context;
  QueueWait::Entry entry{context->entry_value(HolderValue::Side::none, options_.limit), context->unique_key_suffix(),
                         Admission::counted(options_.limit),
                         [this](const std::vector<std::string>& values) { check_limits(values); }, true};
  AsyncAcquisition::Request request{
      .context = context,
      .kind = "permit",
      .name = named_.name,
      .retry = {options_.retry.retry_interval, options_.retry.max_retries, options_.retry.max_retry_interval},
      .counters = named_.counters,
      .turns = {},  // permits take no turn
      .owner = shared_from_this(),
      .deadline = deadline,
      .cancel = std::move(cancel),
  };
  AsyncAcquisition::start(std::move(request), named_.queue, std::move(entry),
                          [self = shared_from_this(), done = std::move(done)](AsyncAcquisition::Outcome outcome) {
                            if (!outcome.acquired()) return done(outcome.error, nullptr);
                            if (outcome.waited) self->releaser_.expect_successor();
                            self->named_.context->log()(
                                LogLevel::debug, "permit acquired",
                                {{"name", self->named_.name}, {"key", outcome.hold()->entry().key}});
                            done({}, std::make_shared<PermitHold>(self, std::move(outcome.hold()), outcome.in_doubt));
                          });
}

void SemaphoreImpl::release(Hold& hold, bool in_doubt, std::error_code& ec) noexcept {
  releaser_.release(hold, in_doubt, ec);
  hold.signal_loss_now();  // permits take no turn: nothing is held here
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
