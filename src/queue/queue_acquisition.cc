#include "queue/queue_acquisition.h"

#include "base/retry_budget.h"
#include "base/text.h"
#include "queue/acquisition_retries.h"
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
  std::optional<Acquired> acquired;
  const auto try_once = [&](const std::shared_ptr<Session>& session) {
    session_ = session;
    switch (wait_.run(session_, deadline, cancel, mode)) {
      case QueueWait::Result::acquired: {
        const auto& admitted = wait_.acquired();
        auto hold =
            std::make_shared<Hold>(context_, session_, admitted.entry, kind_, name_, counters_, admitted.successor);
        hold->start();
        if (hold->lost()) {
          hold->finish();  // its lease ended just now: queue again
          return TryOutcome::again;
        }
        acquired = Acquired{std::move(hold), admitted.waited, admitted.in_doubt};
        return TryOutcome::acquired;
      }
      case QueueWait::Result::entry_lost:
        context_->log()(LogLevel::info, "queue entry lost while waiting; queueing again",
                        {{"name", name_}, {"key", wait_.key()}});
        return TryOutcome::again;
      case QueueWait::Result::not_acquired:
        break;
    }
    return TryOutcome::not_acquired;
  };
  acquire_with_retries(*context_, retry_, description_, name_, deadline, cancel, mode, try_once, [this] { give_up(); });
  return acquired;
}

}  // namespace etcdlock::detail
