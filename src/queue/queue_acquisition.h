// QueueAcquisition: one call's way to the head of a queue, for a lock or an
// election: take a place and wait (QueueWait), retry transient failures as
// LockOptions or ElectionOptions say, queue again on a new lease when the entry or its lease is
// lost, and leave no entry behind when it gives up, times out, is cancelled
// or fails.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>

#include "base/retry_budget.h"
#include "keys/queue_requests.h"
#include "queue/hold.h"
#include "queue/primitive_context.h"
#include "queue/primitive_metrics.h"
#include "queue/queue_attempt.h"
#include "queue/queue_wait.h"

namespace etcdlock::detail {

class QueueAcquisition {
 public:
  struct Acquired {
    std::shared_ptr<Hold> hold;  // started
    bool waited = false;         // an entry was ahead of ours at some point
    bool in_doubt = false;       // a create went unanswered: retire the key when the hold ends
  };

  // `kind` ("lock", "leadership", "permit") and `name` say in messages what
  // is acquired; `entry` what the queue entry is.
  // `counters` (may be null) count its outcome and wait.
  QueueAcquisition(std::shared_ptr<PrimitiveContext> context, QueueDir queue, std::string kind, std::string name,
                   QueueWait::Entry entry, RetryPolicy retry, std::shared_ptr<PrimitiveCounters> counters);

  // The hold, once our entry is first; nullopt when `mode` gave up or the
  // deadline passed. Throws Error: cancelled, closed, unavailable (after the
  // retries), permission_denied.
  std::optional<Acquired> run(SteadyTime deadline, const std::stop_token& cancel, QueueWait::Mode mode);
  // The key of the attempt's entry, once it has a session.
  std::string key() const { return attempt_.key(); }

 private:
  std::optional<Acquired> attempt(SteadyTime deadline, const std::stop_token& cancel, QueueWait::Mode mode);

  const std::shared_ptr<PrimitiveContext> context_;
  const std::string name_;
  const RetryPolicy retry_;
  const std::shared_ptr<PrimitiveCounters> counters_;
  // The asynchronous acquisition's attempt, run blocking: one place for the
  // rules of taking a hold, of logging a requeue and of leaving no entry.
  OneQueueAttempt attempt_;
  std::shared_ptr<Session> session_;
};

}  // namespace etcdlock::detail
