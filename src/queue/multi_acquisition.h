// MultiAcquisition: one call's way to the head of several queues at once, for
// a multi-lock.
//
// One Txn creates an entry in every queue, so all of them get one create
// revision; then the entry in each queue waits until it is first (a QueueWait
// per queue, taking notes and watching its predecessors as a lock's does).
// Every entry ahead of ours in any queue was created before ours, and its
// owner waits, in each of its queues, only for entries older still: a wait
// never waits on a younger entry, so the waits can form no cycle, whatever
// order anyone names the queues in. A single lock's entry (etcdlock's, Go's,
// etcdctl's) is one more entry of one queue, and takes its place by the same
// rule.
//
// Retries, new leases and leftovers go as for one queue (acquisition_retries.h):
// when any entry is lost while waiting, the others are removed and the set
// queues again; what it gives up leaves no entry behind.
//
// Blocking (run()) or in steps (the QueueAttempt functions, for an
// asynchronous acquisition): the same writes and reads in the same order.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "base/retry_budget.h"
#include "keys/queue_requests.h"
#include "queue/acquisition_retries.h"
#include "queue/hold.h"
#include "queue/primitive_context.h"
#include "queue/primitive_metrics.h"
#include "queue/queue_attempt.h"
#include "queue/queue_wait.h"

namespace etcdlock::detail {

// Not thread-safe: one call's.
class MultiAcquisition final : public QueueAttempt {
 public:
  struct Queue {
    QueueDir dir;
    std::string name;                             // for messages
    std::shared_ptr<PrimitiveCounters> counters;  // its holds' (may be null)
  };
  // The holds, one per queue, in order, with one create revision.
  using Acquired = Held;

  // `description` ("multi-lock {\"a\", \"b\"}") names the set in messages.
  MultiAcquisition(std::shared_ptr<PrimitiveContext> context, std::vector<Queue> queues, std::string description,
                   RetryPolicy retry);

  // The holds, once our entry is first in every queue; nullopt when `mode`
  // gave up or the deadline passed. Throws as QueueAcquisition::run.
  std::optional<Acquired> run(SteadyTime deadline, const std::stop_token& cancel, QueueWait::Mode mode);
  // The keys of the attempt's entries, once it has a session.
  const std::vector<std::string>& keys() const { return keys_; }

  // In steps: start() creates the entries (on a new lease, or after one was
  // lost) and waits for each queue in turn, poll() goes on with the queue
  // waited for. As QueueAttempt says.
  void set_waker(std::function<void()> waker) override;
  std::optional<QueueWait::Result> start(const std::shared_ptr<Session>& session, SteadyTime deadline,
                                         QueueWait::Mode mode) override;
  QueueWait::Poll poll(const Session& session, SteadyTime deadline, bool give_up_now, bool grace_over) override;
  std::optional<Held> take_holds(const std::shared_ptr<Session>& session) override;
  void give_up(const Session* session) noexcept override;
  std::string key() const override { return keys_.empty() ? std::string() : keys_.front(); }
  std::string description() const override { return description_; }

 private:
  TryOutcome try_once(const std::shared_ptr<Session>& session, SteadyTime deadline, const std::stop_token& cancel,
                      QueueWait::Mode mode);
  // New keys on `session`'s lease; what an earlier lease's keys may still
  // hold is retired.
  void begin(const Session& session);
  // Creates every entry in one Txn: true when they exist now (created, or a
  // retry of a create that was applied); false when a key was taken by
  // something else, and fresh keys were chosen.
  bool enqueue(const Session& session, SteadyTime deadline);
  // Every entry still there, read in one revision (an entry admitted early
  // may have been deleted while a later queue was waited for).
  bool confirm_all(SteadyTime deadline) const;
  // In steps: starts the wait of each queue not admitted yet, in order,
  // until one waits (nullopt); once every queue admitted, confirms them all.
  // `give_up_now`: a queue that would wait gives up instead.
  std::optional<QueueWait::Result> advance(SteadyTime deadline, bool give_up_now);
  // A decided result of queue `index`'s wait, in steps: admitted there, or
  // what the attempt comes to.
  std::optional<QueueWait::Result> on_queue_result(std::size_t index, QueueWait::Result result);
  // An entry is gone: remove the others, and queue again with fresh keys.
  TryOutcome lose_entries(const std::string& why);
  // Removes every entry this call may have left.
  void remove_entries() noexcept;
  std::vector<QueueEntry> entries() const;

  const std::shared_ptr<PrimitiveContext> context_;
  const std::vector<Queue> queues_;
  const std::string description_;
  const RetryPolicy retry_;
  std::vector<std::unique_ptr<QueueWait>> waits_;  // one per queue
  std::vector<std::string> keys_;                  // our entries' keys on lease_id_
  std::vector<bool> admitted_;                     // per queue: first at some point
  std::shared_ptr<Session> session_;               // in steps: the one start() was given
  QueueWait::Mode mode_ = QueueWait::Mode::wait;   // in steps: start()'s
  bool confirm_pending_ = false;                   // admitted at different times: read them all once more
  bool waited_ = false;                            // some queue was waited for
  std::int64_t lease_id_ = 0;                      // 0: no keys chosen
  std::int64_t revision_ = 0;                      // the entries' create revision, once known
  bool create_sent_ = false;                       // a create of keys_ went out: they may exist
  bool in_doubt_ = false;                          // a create of keys_ went unanswered
};

}  // namespace etcdlock::detail
