#include "queue/acquisition_retries.h"

#include <condition_variable>

namespace etcdlock::detail {

bool acquire_with_retries(PrimitiveContext& context, const RetryPolicy& retry, const std::string& description,
                          const std::string& name, SteadyTime deadline, const std::stop_token& cancel,
                          QueueWait::Mode mode,
                          const std::function<TryOutcome(const std::shared_ptr<Session>&)>& try_once,
                          const std::function<void()>& give_up) {
  const auto cancelled = [&] { return Error(errc::cancelled, "the wait for " + description + " was cancelled"); };
  RetryBudget retries(retry);
  Mutex pause_mu;
  std::condition_variable_any pause;
  std::stop_callback on_closed(context.closed_token(), [&] {
    { MutexLock lock(pause_mu); }
    pause.notify_all();
  });
  std::shared_ptr<Session> session;
  for (;;) {
    try {
      context.check_open();
      if (cancel.stop_requested()) throw cancelled();
      if (mode == QueueWait::Mode::wait && SteadyClock::now() >= deadline) break;
      session = context.sessions().current(deadline);
      const auto outcome = try_once(session);
      if (outcome == TryOutcome::acquired) return true;
      if (outcome == TryOutcome::again) continue;
      if (cancel.stop_requested()) throw cancelled();
      break;
    } catch (const etcd::LeaseNotFound&) {
      // The lease died before its keepalive stream said so: end the session
      // here, and queue again on a new lease.
      if (session) session->invalidate("etcd no longer knows the lease");
    } catch (const Error& error) {
      if (error.value() == errc::closed) throw;
      if (error.value() != errc::unavailable) {
        give_up();
        throw;
      }
      if (mode == QueueWait::Mode::wait && SteadyClock::now() >= deadline) {
        // The caller's deadline ended the request under way: not acquired in
        // time, as when it comes between requests.
        give_up();
        if (cancel.stop_requested()) throw cancelled();
        return false;
      }
      const auto resume = retries.next(deadline);
      if (!resume) {
        give_up();
        throw Error(errc::unavailable, description + " not acquired after " + std::to_string(retries.failures()) +
                                           " failed attempts; last: " + error.what());
      }
      context.log()(LogLevel::info, "retrying after a transient failure",
                    {{"name", name}, {"attempt", std::to_string(retries.failures())}, {"error", error.what()}});
      MutexLock lock(pause_mu);
      pause.wait_until(lock, cancel, *resume, [&] { return context.closed(); });
    }
  }
  give_up();
  return false;
}

}  // namespace etcdlock::detail
