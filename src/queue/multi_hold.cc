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
    : queues_(std::move(queues)),
      in_doubt_(in_doubt),
      shared_(std::make_shared<Shared>(std::move(context), std::move(holds))) {
  for (std::size_t i = 0; i < shared_->holds.size(); ++i) {
    // Runs where the hold's token is requested (a notifier thread, or an
    // unlock's); the application's callbacks run in the task, not in here.
    on_lost_.push_back(
        std::make_unique<LossCallback>(shared_->holds[i]->lost_token(), std::function<void()>([shared = shared_, i] {
                                         shared->context->notifier().post([shared, i] { after_hold_lost(shared, i); });
                                       })));
  }
}

MultiHold::~MultiHold() {
  on_lost_.clear();
  for (const auto& hold : shared_->holds) hold->finish();
  // A loss signal a hold posted may not have reached its callback above
  // before it went (a release that found the loss, from a destructor that
  // cannot signal it itself): the holds' states are final now, so send it on.
  if (lost()) {
    shared_->context->notifier().post([source = shared_->lost_source]() mutable { source.request_stop(); });
  }
}

bool MultiHold::lost() const {
  for (const auto& hold : shared_->holds) {
    if (hold->lost()) return true;
  }
  return false;
}

std::vector<QueueEntry> MultiHold::entries() const {
  std::vector<QueueEntry> own;
  for (const auto& hold : shared_->holds) own.push_back(hold->entry());
  return own;
}

void MultiHold::after_hold_lost(const std::shared_ptr<Shared>& shared, std::size_t lost) {
  // Tell the application first: its callbacks run here. Only the task that
  // made the request goes on: another name's task (two names lost at once)
  // returns from request_stop() while the callbacks may still be running, and
  // must not let anyone into the other names before they end.
  if (!shared->lost_source.request_stop()) return;
  // Then let the other queues go, unless the owner gives the hold up (its
  // release deletes the entries, and a retire after it could remove the
  // entries of the next hold of the same keys; a request made by the owner,
  // signal_loss_now, comes after its release).
  std::vector<std::size_t> retired;
  {
    MutexLock lock(shared->mu);
    if (shared->given_up || std::exchange(shared->others_retired, true)) return;
    for (std::size_t i = 0; i < shared->holds.size(); ++i) {
      const auto& hold = *shared->holds[i];
      if (i == lost || hold.lost()) continue;
      shared->context->strays().retire(hold.entry().key, hold.lease_id());  // never blocks
      retired.push_back(i);
    }
  }
  for (const auto i : retired) {
    shared->context->log()(LogLevel::warning, "multi-lock lost one name; releasing the others",
                           {{"lost", shared->holds[lost]->entry().key}, {"key", shared->holds[i]->entry().key}});
  }
}

bool MultiHold::give_up(bool expect_successors, std::error_code& ec) noexcept {
  ec.clear();
  {
    // From here no loss retires an entry: this release removes them.
    MutexLock lock(shared_->mu);
    shared_->given_up = true;
  }
  const auto& holds = shared_->holds;
  const auto& context = shared_->context;
  // One Txn for every hold: the first give_up that asks sends it, and the
  // others share its answer (or its failure).
  std::optional<MultiRelease> release;
  std::exception_ptr failure;
  const auto remove_all = [&] {
    if (!release && !failure) {
      try {
        release = release_all_and_hand_over(context->client(), queues_, entries(), expect_successors);
      } catch (...) {
        failure = std::current_exception();
      }
    }
    if (failure) std::rethrow_exception(failure);
    return release->all_were_there;
  };
  // Every hold stops following its key before the one Txn deletes them all:
  // a hold still watching would take that delete for a loss.
  // Each follows the manager's close until its give_up() ends: a close that
  // begins meanwhile registers the queues for its notes (Hold::finish).
  for (const auto& hold : holds) hold->finish(Hold::Closing::follow);
  for (const auto& hold : holds) {
    std::error_code one;
    hold->give_up(remove_all, in_doubt_, one);
    if (severity(one) > severity(ec)) ec = one;
  }
  if (release && !release->all_were_there) {
    // Some entry was gone, so nothing was deleted: the ones that stand go now.
    for (std::size_t i = 0; i < holds.size(); ++i) {
      if (release->still_there[i]) remove_entry(*context, Leftover{holds[i]->entry(), in_doubt_}, holds[i]->lease_id());
    }
    // A note for one of them may have landed after the drain that their
    // holds' give_up() scheduled: read once these are gone too.
    context->inbox().entry_gone();
  }
  return release && release->successor_seen;
}

void MultiHold::signal_loss_now() {
  // Not through the holds' tokens: their callbacks only post, and the
  // caller is to return with this token requested.
  if (lost()) shared_->lost_source.request_stop();
  for (const auto& hold : shared_->holds) hold->signal_loss_now();
}

}  // namespace etcdlock::detail
