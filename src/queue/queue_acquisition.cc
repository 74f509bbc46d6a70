#include "queue/queue_acquisition.h"

#include "base/retry_budget.h"
#include "base/text.h"
#include "queue/entry_removal.h"

namespace etcdlock::detail {

QueueAcquisition::QueueAcquisition(std::shared_ptr<PrimitiveContext> context, QueueDir queue, std::string kind,
                                   std::string name, QueueWait::Entry entry, RetryPolicy retry,
                                   std::shared_ptr<PrimitiveCounters> counters)
    : context_(context),
      kind_(std::move(kind)),
      name_(std::move(name)),
      description_(kind_ + " " + quote_value(name_)),
      retry_(retry),
      counters_(std::move(counters)),
      wait_(std::move(context), std::move(queue), std::move(entry)) {}

Error QueueAcquisition::cancelled_error() const {
  return Error(errc::cancelled, "the wait for " + description_ + " was cancelled");
}

void QueueAcquisition::give_up() {
  if (const auto entry = wait_.leftover(); entry && session_) remove_entry(*context_, *entry, session_->lease_id());
}

std::optional<QueueAcquisition::Acquired> QueueAcquisition::run(SteadyTime deadline, const std::stop_token& cancel,
                                                                QueueWait::Mode mode) {
  if (!counters_) return attempt(deadline, cancel, mode);
  const auto started = SteadyClock::now();
  ++counters_->waiting;
  try {
    auto acquired = attempt(deadline, cancel, mode);
    --counters_->waiting;
    if (acquired) {
      ++counters_->acquisitions;
      counters_->wait.observe(SteadyClock::now() - started);
    } else if (mode == QueueWait::Mode::try_once) {
      ++counters_->try_failures;
    } else {
      ++counters_->timeouts;
    }
    return acquired;
  } catch (const Error& error) {
    --counters_->waiting;
    if (error.value() == errc::cancelled) ++counters_->cancellations;
    throw;
  }
}

std::optional<QueueAcquisition::Acquired> QueueAcquisition::attempt(SteadyTime deadline, const std::stop_token& cancel,
                                                                    QueueWait::Mode mode) {
  RetryBudget retries(retry_);
  Mutex pause_mu;
  std::condition_variable_any pause;
  std::stop_callback on_closed(context_->closed_token(), [&] {
    { MutexLock lock(pause_mu); }
    pause.notify_all();
  });
  for (;;) {
    try {
      context_->check_open();
      if (cancel.stop_requested()) throw cancelled_error();
      if (mode == QueueWait::Mode::wait && SteadyClock::now() >= deadline) break;
      session_ = context_->sessions().current(deadline);
      switch (wait_.run(session_, deadline, cancel, mode)) {
        case QueueWait::Result::acquired: {
          const auto& acquired = wait_.acquired();
          auto hold = std::make_shared<Hold>(context_, session_, acquired.entry, kind_, name_, counters_);
          hold->start();
          if (!hold->lost()) return Acquired{std::move(hold), acquired.waited, acquired.in_doubt};
          hold->finish();  // its lease ended just now: queue again
          continue;
        }
        case QueueWait::Result::entry_lost:
          context_->log()(LogLevel::info, "queue entry lost while waiting; queueing again",
                          {{"name", name_}, {"key", wait_.key()}});
          continue;
        case QueueWait::Result::not_acquired:
          if (cancel.stop_requested()) throw cancelled_error();
          break;
      }
      break;
    } catch (const etcd::LeaseNotFound&) {
      // The lease died before its keepalive stream said so: end the session
      // here, and queue again on a new lease.
      if (session_) session_->invalidate("etcd no longer knows the lease");
    } catch (const Error& error) {
      if (error.value() == errc::closed) throw;
      if (error.value() != errc::unavailable) {
        give_up();
        throw;
      }
      const auto resume = retries.next(deadline);
      if (!resume) {
        give_up();
        throw Error(errc::unavailable, description_ + " not acquired after " + std::to_string(retries.failures()) +
                                           " failed attempts; last: " + error.what());
      }
      context_->log()(LogLevel::info, "retrying after a transient failure",
                      {{"name", name_}, {"attempt", std::to_string(retries.failures())}, {"error", error.what()}});
      MutexLock lock(pause_mu);
      pause.wait_until(lock, cancel, *resume, [&] { return context_->closed(); });
    }
  }
  give_up();
  return std::nullopt;
}

}  // namespace etcdlock::detail
