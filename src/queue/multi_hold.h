// MultiHold: the holds of one multi-lock acquisition, one per queue, that
// stand and fall together.
//
// Each Hold follows its own key, the session and the manager (hold.h). When
// any of them is lost (its key deleted by a force unlock, say), the whole
// hold is: its token is requested, and the other entries are retired
// (stray_entries.h), which removes them in the background, since a holder
// that lost one name must not go on blocking the others' queues.
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
  std::stop_token lost_token() const { return lost_source_.get_token(); }
  // The entries' one create revision.
  std::int64_t revision() const { return holds_.front()->entry().revision; }
  std::vector<QueueEntry> entries() const;
  const std::vector<std::shared_ptr<Hold>>& holds() const { return holds_; }

  // The owner gives the hold up: every entry deleted in one Txn, guarded by
  // all their create revisions; `ec` as Hold::give_up says, the worst of
  // them (unavailable before others before lock_expired). Never throws.
  void give_up(std::error_code& ec) noexcept;
  // As Hold::signal_loss_now, for every hold.
  void signal_loss_now();

 private:
  void on_hold_lost(std::size_t lost);

  const std::shared_ptr<PrimitiveContext> context_;
  const std::vector<QueueDir> queues_;
  const std::vector<std::shared_ptr<Hold>> holds_;
  const bool in_doubt_;
  std::stop_source lost_source_;
  // Declared last, so destroyed first: none runs once the rest is gone.
  using LossCallback = std::stop_callback<std::function<void()>>;
  std::vector<std::unique_ptr<LossCallback>> on_lost_;
};

}  // namespace etcdlock::detail
