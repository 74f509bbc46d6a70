#include "queue/multi_hold.h"

#include <exception>
#include <optional>

#include "queue/entry_removal.h"
#include "queue/hand_over.h"

namespace etcdlock::detail {
namespace {

// The error that says most about a release: unknown outcome, then a refusal,
// then a hold that was lost.
int severity(const std::error_code& ec) {
  if (!ec) return 0;
  if (ec == errc::lock_expired) return 1;
  if (ec == errc::unavailable) return 3;
  return 2;
}

}  // namespace

MultiHold::MultiHold(std::shared_ptr<PrimitiveContext> context, std::vector<QueueDir> queues,
                     std::vector<std::shared_ptr<Hold>> holds, bool in_doubt)
    : context_(std::move(context)), queues_(std::move(queues)), holds_(std::move(holds)), in_doubt_(in_doubt) {
  for (std::size_t i = 0; i < holds_.size(); ++i) {
    on_lost_.push_back(
        std::make_unique<LossCallback>(holds_[i]->lost_token(), std::function<void()>([this, i] { on_hold_lost(i); })));
  }
}

MultiHold::~MultiHold() {
  on_lost_.clear();
  for (const auto& hold : holds_) hold->finish();
}

bool MultiHold::lost() const {
  for (const auto& hold : holds_) {
    if (hold->lost()) return true;
  }
  return false;
}

std::vector<QueueEntry> MultiHold::entries() const {
  std::vector<QueueEntry> own;
  for (const auto& hold : holds_) own.push_back(hold->entry());
  return own;
}

void MultiHold::on_hold_lost(std::size_t lost) {
  // On the thread that requested the hold's token (the notifier's, or an
  // unlock's): tell the application first, then let the other queues go.
  lost_source_.request_stop();
  for (std::size_t i = 0; i < holds_.size(); ++i) {
    if (i == lost || holds_[i]->lost()) continue;
    context_->log()(LogLevel::warning, "multi-lock lost one name; releasing the others",
                    {{"lost", holds_[lost]->entry().key}, {"key", holds_[i]->entry().key}});
    context_->strays().retire(holds_[i]->entry().key, holds_[i]->lease_id());
  }
}

void MultiHold::give_up(std::error_code& ec) noexcept {
  ec.clear();
  // One Txn for every hold: the first give_up that asks sends it, and the
  // others share its answer (or its failure).
  std::optional<MultiRelease> release;
  std::exception_ptr failure;
  const auto remove_all = [&] {
    if (!release && !failure) {
      try {
        release = release_all_and_hand_over(context_->client(), queues_, entries());
      } catch (...) {
        failure = std::current_exception();
      }
    }
    if (failure) std::rethrow_exception(failure);
    return release->all_were_there;
  };
  // Every hold stops following its key before the one Txn deletes them all:
  // a hold still watching would take that delete for a loss.
  for (const auto& hold : holds_) hold->finish();
  for (const auto& hold : holds_) {
    std::error_code one;
    hold->give_up(remove_all, in_doubt_, one);
    if (severity(one) > severity(ec)) ec = one;
  }
  if (release && !release->all_were_there) {
    // Some entry was gone, so nothing was deleted: the ones that stand go now.
    for (std::size_t i = 0; i < holds_.size(); ++i) {
      if (release->still_there[i])
        remove_entry(*context_, Leftover{holds_[i]->entry(), in_doubt_}, holds_[i]->lease_id());
    }
  }
}

void MultiHold::signal_loss_now() {
  for (const auto& hold : holds_) hold->signal_loss_now();
}

}  // namespace etcdlock::detail
