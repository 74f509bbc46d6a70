// MultiHold: the holds of one multi-lock acquisition, one per queue, that
// stand and fall together.
//
// Each Hold follows its own key, the session and the manager (hold.h). When
// any of them is lost (its key deleted by a force unlock, say), the whole
// hold is: its token is requested, and then, unless the owner has begun to
// give the hold up by then, the other entries are retired (stray_entries.h),
// which removes them in the background, since a holder that lost one name
// must not go on blocking the others' queues. The order is the library's
// rule: the application is told before any other holder can be let in.
//
// Both steps run in one task on a notifier thread, which holds only the
// Shared state, never the MultiHold: the application's loss callbacks may
// unlock or destroy the multi-lock, and an unlock never waits for them.
//
// Given up, the entries go in one Txn that deletes them all while every one
// is still the same entry (queue/hand_over.h), and each queue's successor gets
// a note.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stop_token>
#include <system_error>
#include <vector>

#include "base/mutex.h"
#include "keys/queue_requests.h"
#include "queue/hold.h"
#include "queue/primitive_context.h"

namespace etcdlock::detail {

// Thread-safe.
class MultiHold {
 public:
  // `holds`, started, one per queue of `queues`, in order.
  MultiHold(std::shared_ptr<PrimitiveContext> context, std::vector<QueueDir> queues,
            std::vector<std::shared_ptr<Hold>> holds, bool in_doubt);
  ~MultiHold();
  MultiHold(const MultiHold&) = delete;
  MultiHold& operator=(const MultiHold&) = delete;

  // Any of the holds is lost.
  bool lost() const;
  std::stop_token lost_token() const { return shared_->lost_source.get_token(); }
  // The entries' one create revision.
  std::int64_t revision() const { return shared_->holds.front()->entry().revision; }
  std::vector<QueueEntry> entries() const;
  const std::vector<std::shared_ptr<Hold>>& holds() const { return shared_->holds; }

  // The owner gives the hold up: every entry deleted in one Txn, guarded by
  // all their create revisions, which also carries the successors' notes
  // when `expect_successors` (release_all_and_hand_over reads the heads
  // first); `ec` as Hold::give_up says, the worst of them (unavailable
  // before others before lock_expired). Returns whether an entry waited
  // behind any of ours. Never throws.
  bool give_up(bool expect_successors, std::error_code& ec) noexcept;
  // As Hold::signal_loss_now: requests the token now, on the caller's
  // thread, if any hold is lost. The caller holds nothing (no mutex, no turn).
  void signal_loss_now();

 private:
  // What a loss needs, shared with the tasks it posts, which may run after
  // the MultiHold is gone (a loss callback that unlocks or destroys the
  // multi-lock ends it while the task runs).
  struct Shared {
    Shared(std::shared_ptr<PrimitiveContext> context, std::vector<std::shared_ptr<Hold>> holds)
        : context(std::move(context)), holds(std::move(holds)) {}
    const std::shared_ptr<PrimitiveContext> context;
    const std::vector<std::shared_ptr<Hold>> holds;
    std::stop_source lost_source;
    // Taken by a loss's task and by give_up, before StrayEntries' mutex.
    Mutex mu;
    bool given_up ETCDLOCK_GUARDED_BY(mu) = false;  // the owner began to give the hold up
    bool others_retired ETCDLOCK_GUARDED_BY(mu) = false;
  };
  // On a notifier thread, for the hold `lost` of `shared`.
  static void after_hold_lost(const std::shared_ptr<Shared>& shared, std::size_t lost);

  const std::vector<QueueDir> queues_;
  const bool in_doubt_;
  const std::shared_ptr<Shared> shared_;
  // Declared last, so destroyed first. Each only posts a task, so destroying
  // one that runs on another thread waits a moment, never for the application.
  using LossCallback = std::stop_callback<std::function<void()>>;
  std::vector<std::unique_ptr<LossCallback>> on_lost_;
};

}  // namespace etcdlock::detail
