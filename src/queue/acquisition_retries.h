// The retry loop that every queue acquisition shares (a lock's, an
// election's, a permit's, a multi-lock's): try on the current session, retry
// transient failures as the primitive's options say, try again on a new lease
// when the entry or its lease is lost, and leave no entry behind when it gives
// up, times out, is cancelled or fails.
#pragma once

#include <functional>
#include <memory>
#include <stop_token>
#include <string>

#include "base/retry_budget.h"
#include "queue/primitive_context.h"
#include "queue/queue_wait.h"
#include "session/session.h"

namespace etcdlock::detail {

// What one try on a session came to.
enum class TryOutcome {
  acquired,      // held now
  not_acquired,  // not admitted at once (try_once), the deadline passed, or `cancel` was requested
  again,         // the entry or its lease was lost: try again
};

// Calls `try_once` with the current session until it acquires (true) or not
// (false). `description` ("lock \"jobs\"") and `name` go into messages.
// Before it returns false or throws (except errc::closed), `give_up` removes
// what the tries may have left in etcd. Throws Error: cancelled, closed,
// unavailable (after the retries), permission_denied.
bool acquire_with_retries(PrimitiveContext& context, const RetryPolicy& retry, const std::string& description,
                          const std::string& name, SteadyTime deadline, const std::stop_token& cancel,
                          QueueWait::Mode mode,
                          const std::function<TryOutcome(const std::shared_ptr<Session>&)>& try_once,
                          const std::function<void()>& give_up);

}  // namespace etcdlock::detail
