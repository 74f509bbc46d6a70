#include "queue/queue_attempt.h"

#include "base/text.h"
#include "queue/entry_removal.h"

namespace etcdlock::detail {

OneQueueAttempt::OneQueueAttempt(std::shared_ptr<PrimitiveContext> context, QueueDir queue, QueueWait::Entry entry,
                                 std::string kind, std::string name, std::shared_ptr<PrimitiveCounters> counters)
    : context_(std::move(context)),
      kind_(std::move(kind)),
      name_(std::move(name)),
      counters_(std::move(counters)),
      wait_(context_, std::move(queue), std::move(entry)) {}

QueueWait::Result OneQueueAttempt::run(const std::shared_ptr<Session>& session, SteadyTime deadline,
                                       const std::stop_token& cancel, QueueWait::Mode mode) {
  const auto result = wait_.run(session, deadline, cancel, mode);
  log_if_lost(result);
  return result;
}

std::optional<QueueWait::Result> OneQueueAttempt::start(const std::shared_ptr<Session>& session, SteadyTime deadline,
                                                        QueueWait::Mode mode) {
  const auto result = wait_.start(session, deadline, mode);
  if (result) log_if_lost(*result);
  return result;
}

QueueWait::Poll OneQueueAttempt::poll(const Session& session, SteadyTime deadline, bool give_up_now, bool grace_over) {
  auto polled = wait_.poll(session, deadline, give_up_now, grace_over);
  if (polled.state == QueueWait::Poll::State::decided) log_if_lost(polled.result);
  return polled;
}

void OneQueueAttempt::log_if_lost(QueueWait::Result result) const {
  if (result != QueueWait::Result::entry_lost) return;
  context_->log()(LogLevel::info, "queue entry lost while waiting; queueing again",
                  {{"name", name_}, {"key", wait_.key()}});
}

std::optional<QueueAttempt::Held> OneQueueAttempt::take_holds(const std::shared_ptr<Session>& session) {
  const auto& admitted = wait_.acquired();
  auto hold = std::make_shared<Hold>(context_, session, admitted.entry, kind_, name_, counters_, admitted.successor);
  hold->start();
  if (hold->lost()) {
    hold->finish();  // its lease ended just now: queue again
    return std::nullopt;
  }
  return Held{{std::move(hold)}, admitted.waited, admitted.in_doubt};
}

std::string OneQueueAttempt::description() const { return kind_ + " " + quote_value(name_); }

void OneQueueAttempt::give_up(const Session* session) noexcept {
  try {
    if (const auto entry = wait_.leftover(); entry && session) remove_entry(*context_, *entry, session->lease_id());
  } catch (const std::exception& error) {
    context_->log()(LogLevel::warning, "could not hand a leftover entry to its removal",
                    {{"name", name_}, {"error", error.what()}});
  }
}

}  // namespace etcdlock::detail
