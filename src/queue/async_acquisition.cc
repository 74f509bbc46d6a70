#include "queue/async_acquisition.h"

#include <utility>

#include "base/text.h"

namespace etcdlock::detail {

void AsyncAcquisition::start(Request request, QueueDir queue, QueueWait::Entry entry, Done done) {
  auto attempt = std::make_unique<OneQueueAttempt>(request.context, std::move(queue), std::move(entry), request.kind,
                                                   request.name, request.counters);
  start(std::move(request), std::move(attempt), std::move(done));
}

void AsyncAcquisition::start(Request request, std::unique_ptr<QueueAttempt> attempt, Done done) {
  const auto acquisition = std::make_shared<AsyncAcquisition>(std::move(request), std::move(attempt), std::move(done));
  acquisition->begin();
}

AsyncAcquisition::AsyncAcquisition(Request request, std::unique_ptr<QueueAttempt> attempt, Done done)
    : request_(std::move(request)),
      mode_(request_.deadline <= SteadyClock::now() ? QueueWait::Mode::try_once : QueueWait::Mode::wait),
      requests_deadline_(mode_ == QueueWait::Mode::try_once
                             ? SteadyClock::now() + request_.context->client().command_timeout()
                             : request_.deadline),
      done_(std::move(done)),
      attempt_(std::move(attempt)),
      description_(attempt_->description()),
      retries_(request_.retry) {}

AsyncAcquisition::~AsyncAcquisition() {
  std::size_t taken = 0;
  {
    MutexLock lock(mu_);
    if (!turns_kept_) taken = turns_taken_;
  }
  give_back_turns(taken);
}

void AsyncAcquisition::give_back_turns(std::size_t taken) noexcept {
  while (taken > 0) request_.turns[--taken]->give_back();
}

void AsyncAcquisition::begin() {
  if (request_.counters) ++request_.counters->waiting;
  {
    MutexLock lock(mu_);
    self_ = shared_from_this();
  }
  const std::weak_ptr<AsyncAcquisition> weak = weak_from_this();
  // Either may run at once, on this thread, when already requested.
  on_closed_.emplace(request_.context->closed_token(), [weak] {
    if (const auto self = weak.lock()) self->on_closed();
  });
  {
    MutexLock lock(mu_);
    if (request_.deadline != SteadyTime::max() && !ended_) {
      deadline_task_ = request_.context->step_deadlines().post_at(request_.deadline, [weak] {
        if (const auto self = weak.lock()) self->give_up_soon();
      });
    }
  }
  // Holders that share an entry's key take the turns first; a permit has a
  // key of its own, and no turn. The first step is posted once all are ours.
  take_turns();
  // Last: a cancel requested already decides at once, and must find the
  // ticket recorded.
  on_cancel_.emplace(request_.cancel, [weak] {
    if (const auto self = weak.lock()) self->give_up_soon();
  });
}

void AsyncAcquisition::take_turns() {
  bool step_now = false;
  {
    MutexLock lock(mu_);
    step_now = take_free_turns();
  }
  if (step_now) post_step();
}

bool AsyncAcquisition::take_free_turns() {
  // Under mu_ from the grant or the take to the ticket's record (a turn's
  // mutex comes after ours): a cancel or a deadline finds the ticket of the
  // turn waited for, or none, never one of another turn's.
  const std::weak_ptr<AsyncAcquisition> weak = weak_from_this();
  while (!ended_ && !has_turns()) {
    const std::size_t index = turns_taken_;
    const auto ticket = request_.turns[index]->take_async([weak, index] {
      const auto self = weak.lock();
      return self && self->on_turn(index);
    });
    if (!ticket.granted) {
      turn_ticket_ = ticket.id;
      // Its grant goes on, unless a step must withdraw it: a try, or a
      // cancel or deadline that came while an earlier turn was granted
      // (a step it posted found no ticket to withdraw then).
      return mode_ == QueueWait::Mode::try_once || request_.cancel.stop_requested() ||
             SteadyClock::now() >= request_.deadline;
    }
    ++turns_taken_;
  }
  return !ended_;
}

void AsyncAcquisition::give_up_soon() {
  {
    MutexLock lock(stepping_->mu);
    if (stepping_->running) {
      stepping_->again = true;  // the step under way gives up next
      return;
    }
    stepping_->running = true;  // no step starts while this decides
  }
  const bool ended = end_if_nothing_sent();
  {
    MutexLock lock(stepping_->mu);
    stepping_->running = false;
    stepping_->again = false;  // asked for meanwhile: the step posted below runs it
  }
  if (!ended) post_step();
}

bool AsyncAcquisition::end_if_nothing_sent() {
  const bool expired = mode_ == QueueWait::Mode::wait && SteadyClock::now() >= request_.deadline;
  if (!request_.cancel.stop_requested() && !expired) return false;
  {
    MutexLock lock(mu_);
    if (ended_) return true;
    if (!has_turns()) {
      // Waiting for another holder of this process: nothing in etcd yet.
      // finish() gives back the turns taken so far.
      // None, or no longer queued: granted meanwhile, and its step follows.
      if (turn_ticket_ == 0 || !request_.turns[turns_taken_]->withdraw(turn_ticket_)) return false;
    } else if (session_ || waiting_) {
      return false;  // a step talked to etcd: one gives the entry up, if it made one
    }
  }
  finish(Outcome{not_acquired_error(), {}, false, false, {}});
  return true;
}

bool AsyncAcquisition::on_turn(std::size_t index) {
  bool step_now = false;
  {
    MutexLock lock(mu_);
    if (ended_) return false;
    turns_taken_ = index + 1;
    turn_ticket_ = 0;  // the ticket of the turn just granted: nothing to withdraw
    step_now = take_free_turns();
  }
  if (step_now) post_step();
  return true;
}

void AsyncAcquisition::on_closed() {
  std::shared_ptr<AsyncAcquisition> self;
  std::size_t taken = 0;
  {
    MutexLock lock(mu_);
    if (ended_) return;
    ended_ = true;
    taken = std::exchange(turns_taken_, 0);
    self = std::move(self_);
  }
  // The steps may never run again (closing stops their thread): the outcome
  // goes now, the turns back before it. Closing revokes the lease, so no
  // entry outlives it; a step under way that still acquires gives its holds
  // up at once (finish()).
  give_back_turns(taken);
  if (request_.counters) --request_.counters->waiting;
  request_.context->notifier().post([self, done = std::move(done_), error = make_error_code(errc::closed)] {
    done(Outcome{error, {}, false, false, {}});
  });
}

bool AsyncAcquisition::Stepping::ask_again() {
  MutexLock lock(mu);
  if (!running) return false;
  again = true;
  return true;
}

void AsyncAcquisition::post_step(SteadyTime at) {
  // The step under way runs it next, on its own thread: a task would wake
  // another step thread only to find this acquisition busy.
  if (at == SteadyTime::min() && stepping_->ask_again()) return;
  const std::weak_ptr<AsyncAcquisition> weak = weak_from_this();
  const auto task = [weak] {
    if (const auto self = weak.lock()) self->step();
  };
  if (at == SteadyTime::min()) {
    request_.context->steps().post(task);
  } else {
    request_.context->steps().post_at(at, task);
  }
}

void AsyncAcquisition::step() {
  {
    MutexLock lock(stepping_->mu);
    if (stepping_->running) {
      stepping_->again = true;  // the step under way runs it next
      return;
    }
    stepping_->running = true;
  }
  for (;;) {
    one_step();
    MutexLock lock(stepping_->mu);
    if (!stepping_->again) {
      stepping_->running = false;
      return;
    }
    stepping_->again = false;
  }
}

void AsyncAcquisition::one_step() {
  const bool expired = mode_ == QueueWait::Mode::wait && SteadyClock::now() >= request_.deadline;
  // One try (mode_ try_once) ends by its result, or by a cancel.
  const bool give_up_now = request_.cancel.stop_requested() || expired;
  {
    MutexLock lock(mu_);
    if (ended_) return;
    if (!has_turns()) {
      if (!give_up_now && mode_ == QueueWait::Mode::wait) return;  // the turn's grant goes on
      // Still waiting for another holder of this process: nothing in etcd
      // yet. finish() gives back the turns taken so far.
      // None, or no longer queued: granted meanwhile, and its step follows.
      if (turn_ticket_ == 0 || !request_.turns[turns_taken_]->withdraw(turn_ticket_)) return;
      lock.unlock();
      return finish(Outcome{not_acquired_error(), {}, false, false, {}});
    }
  }
  step_in_queue(give_up_now);
}

std::error_code AsyncAcquisition::not_acquired_error() const {
  if (request_.cancel.stop_requested()) return make_error_code(errc::cancelled);
  return make_error_code(errc::lock_timeout);
}

void AsyncAcquisition::step_in_queue(bool give_up_now) {
  try {
    request_.context->check_open();
    if (!waiting_) {
      if (give_up_now) {
        give_up();
        return finish(Outcome{not_acquired_error(), {}, false, false, attempt_->key()});
      }
      const auto session = request_.context->sessions().current(requests_deadline_);
      if (session != session_) {
        session_ = session;
        const std::weak_ptr<AsyncAcquisition> weak = weak_from_this();
        on_session_lost_.emplace(session_->lost_token(), [weak] {
          if (const auto self = weak.lock()) self->post_step();
        });
      }
      // Before the first request: a note may come as soon as the entry exists.
      // Holds the acquisition weakly: the signalling thread (the watch
      // hub's) must never be where it is destroyed.
      attempt_->set_waker([weak = weak_from_this(), stepping = stepping_, steps = &request_.context->steps()] {
        if (stepping->ask_again()) return;
        steps->post([weak] {
          if (const auto self = weak.lock()) self->step();
        });
      });
      const auto decided = attempt_->start(session_, requests_deadline_, mode_);
      if (!decided) {
        waiting_ = true;
        grace_over_ = false;
        post_step();  // what came while start() ran
        return;
      }
      return on_result(*decided, give_up_now);
    }
    const auto polled = attempt_->poll(*session_, requests_deadline_, give_up_now, grace_over_);
    grace_over_ = false;
    switch (polled.state) {
      case QueueWait::Poll::State::waiting:
        return;
      case QueueWait::Poll::State::grace:
        grace_over_ = true;
        return post_step(SteadyClock::now() + QueueWait::kNoteGrace);
      case QueueWait::Poll::State::decided:
        waiting_ = false;
        return on_result(polled.result, give_up_now);
    }
  } catch (const etcd::LeaseNotFound&) {
    // The lease died before its keepalive stream said so: end the session
    // here, and queue again on a new lease.
    waiting_ = false;
    if (session_) session_->invalidate("etcd no longer knows the lease");
    post_step();
  } catch (const Error& error) {
    waiting_ = false;
    if (error.value() == errc::closed) return on_closed();
    if (error.value() != errc::unavailable) {
      give_up();
      return finish(Outcome{error.code(), {}, false, false, attempt_->key()});
    }
    if (mode_ == QueueWait::Mode::wait && SteadyClock::now() >= request_.deadline) {
      // The caller's deadline ended the request under way: a timeout, as
      // when it comes between requests.
      give_up();
      return finish(Outcome{not_acquired_error(), {}, false, false, attempt_->key()});
    }
    const auto resume = retries_.next(requests_deadline_);
    if (!resume) {
      give_up();
      request_.context->log()(
          LogLevel::warning, description_ + " not acquired: etcd is unavailable",
          {{"name", request_.name}, {"attempts", std::to_string(retries_.failures())}, {"error", error.what()}});
      return finish(Outcome{error.code(), {}, false, false, attempt_->key()});
    }
    request_.context->log()(
        LogLevel::info, "retrying after a transient failure",
        {{"name", request_.name}, {"attempt", std::to_string(retries_.failures())}, {"error", error.what()}});
    post_step(*resume);
  }
}

void AsyncAcquisition::on_result(QueueWait::Result result, bool give_up_now) {
  switch (result) {
    case QueueWait::Result::acquired: {
      auto held = attempt_->take_holds(session_);
      if (!held) return post_step();  // a hold's lease ended just now: queue again
      return finish(Outcome{{}, std::move(held->holds), held->waited, held->in_doubt, attempt_->key()});
    }
    case QueueWait::Result::entry_lost:  // the attempt logged why
      return post_step();
    case QueueWait::Result::not_acquired:
      if (!give_up_now && mode_ == QueueWait::Mode::wait) return post_step();  // nothing to give up for: go on
      give_up();
      return finish(Outcome{not_acquired_error(), {}, false, false, attempt_->key()});
  }
}

void AsyncAcquisition::give_up() noexcept { attempt_->give_up(session_.get()); }

void AsyncAcquisition::finish(Outcome outcome) {
  attempt_->set_waker({});
  std::shared_ptr<AsyncAcquisition> self;
  std::size_t give_back = 0;
  {
    MutexLock lock(mu_);
    if (ended_) {
      // Closed while this step ran: the outcome went already.
      lock.unlock();
      for (const auto& hold : outcome.holds) hold->finish();
      return;
    }
    ended_ = true;
    if (outcome.acquired()) turns_kept_ = true;
    // Not acquired: the turns go back before the handler runs, which may
    // lock again (a blocking lock() there would wait for them for ever).
    if (!outcome.acquired()) give_back = std::exchange(turns_taken_, 0);
    self = std::move(self_);
    // Only a deadline's: step_deadlines() starts its thread when first asked for.
    if (deadline_task_ != 0) request_.context->step_deadlines().cancel(deadline_task_);
  }
  give_back_turns(give_back);
  if (const auto& counters = request_.counters) {
    --counters->waiting;
    if (outcome.acquired()) {
      ++counters->acquisitions;
      counters->wait.observe(SteadyClock::now() - started_);
    } else if (outcome.error == errc::cancelled) {
      ++counters->cancellations;
    } else if (outcome.error == errc::lock_timeout) {
      ++counters->timeouts;
    }
  }
  request_.context->notifier().post(
      [self, done = std::move(done_), outcome = std::move(outcome)]() mutable { done(std::move(outcome)); });
}

}  // namespace etcdlock::detail
