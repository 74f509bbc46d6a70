#include "queue/queue_acquisition.h"

#include "base/retry_budget.h"
#include "queue/acquisition_retries.h"

namespace etcdlock::detail {

QueueAcquisition::QueueAcquisition(std::shared_ptr<PrimitiveContext> context, QueueDir queue, std::string kind,
                                   std::string name, QueueWait::Entry entry, RetryPolicy retry,
                                   std::shared_ptr<PrimitiveCounters> counters)
    : context_(context),
      name_(name),
      retry_(retry),
      counters_(counters),
      attempt_(std::move(context), std::move(queue), std::move(entry), std::move(kind), std::move(name),
               std::move(counters)) {}

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
  std::optional<Acquired> acquired;
  const auto try_once = [&](const std::shared_ptr<Session>& session) {
    session_ = session;
    switch (attempt_.run(session_, deadline, cancel, mode)) {
      case QueueWait::Result::acquired: {
        auto held = attempt_.take_holds(session_);
        if (!held) return TryOutcome::again;  // its lease ended just now
        acquired = Acquired{std::move(held->holds.front()), held->waited, held->in_doubt};
        return TryOutcome::acquired;
      }
      case QueueWait::Result::entry_lost:  // logged by the attempt
        return TryOutcome::again;
      case QueueWait::Result::not_acquired:
        break;
    }
    return TryOutcome::not_acquired;
  };
  acquire_with_retries(*context_, retry_, attempt_.description(), name_, deadline, cancel, mode, try_once,
                       [this] { attempt_.give_up(session_.get()); });
  return acquired;
}

}  // namespace etcdlock::detail
