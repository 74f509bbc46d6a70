#include "queue/async_acquisition.h"

#include <utility>

#include "base/text.h"
#include "queue/entry_removal.h"

namespace etcdlock::detail {

void AsyncAcquisition::start(Request request, Done done) {
  const auto acquisition = std::make_shared<AsyncAcquisition>(std::move(request), std::move(done));
  acquisition->begin();
}

AsyncAcquisition::AsyncAcquisition(Request request, Done done)
    : request_(std::move(request)),
      mode_(request_.deadline <= SteadyClock::now() ? QueueWait::Mode::try_once : QueueWait::Mode::wait),
      requests_deadline_(mode_ == QueueWait::Mode::try_once
                             ? SteadyClock::now() + request_.context->client().command_timeout()
                             : request_.deadline),
      description_(request_.kind + " " + quote_value(request_.name)),
      done_(std::move(done)),
      wait_(request_.context, request_.queue, request_.entry),
      retries_(request_.retry),
      has_turn_(request_.turn == nullptr) {}

AsyncAcquisition::~AsyncAcquisition() {
  bool give_back = false;
  {
    MutexLock lock(mu_);
    give_back = has_turn_ && !turn_kept_ && request_.turn;
  }
  if (give_back) request_.turn->give_back();
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
  // Holders that share an entry's key take the turn first; a permit has a
  // key of its own, and no turn (has_turn_ from the start).
  const auto ticket = request_.turn ? request_.turn->take_async([weak] {
    const auto self = weak.lock();
    return self && self->on_turn();
  })
                                    : Turn::Ticket{true, 0};
  {
    MutexLock lock(mu_);
    if (ticket.granted) has_turn_ = true;
    turn_ticket_ = ticket.id;
    if (request_.deadline != SteadyTime::max() && !ended_) {
      deadline_task_ = request_.context->step_deadlines().post_at(request_.deadline, [weak] {
        if (const auto self = weak.lock()) self->give_up_soon();
      });
    }
  }
  // Last: a cancel requested already decides at once, and must find the
  // ticket recorded.
  on_cancel_.emplace(request_.cancel, [weak] {
    if (const auto self = weak.lock()) self->give_up_soon();
  });
  post_step();
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
  bool has_turn = false;
  std::uint64_t ticket = 0;
  {
    MutexLock lock(mu_);
    if (ended_) return true;
    has_turn = has_turn_;
    ticket = turn_ticket_;
  }
  const bool expired = mode_ == QueueWait::Mode::wait && SteadyClock::now() >= request_.deadline;
  if (!request_.cancel.stop_requested() && !expired) return false;
  if (!has_turn) {
    // Waiting for another holder of this process.
    if (!request_.turn || !request_.turn->withdraw(ticket)) return false;  // granted meanwhile: its step follows
  } else if (session_ || waiting_) {
    return false;  // a step talked to etcd: one gives the entry up, if it made one
  }
  finish(Outcome{not_acquired_error(), nullptr, false, false, {}});
  return true;
}

bool AsyncAcquisition::on_turn() {
  {
    MutexLock lock(mu_);
    if (ended_) return false;
    has_turn_ = true;
  }
  post_step();
  return true;
}

void AsyncAcquisition::on_closed() {
  std::shared_ptr<AsyncAcquisition> self;
  bool give_back = false;
  {
    MutexLock lock(mu_);
    if (ended_) return;
    ended_ = true;
    give_back = has_turn_ && request_.turn;
    if (give_back) has_turn_ = false;
    self = std::move(self_);
  }
  // The steps may never run again (closing stops their thread): the outcome
  // goes now, the turn back before it. Closing revokes the lease, so no
  // entry outlives it; a step under way that still acquires gives its hold
  // up at once (finish()).
  if (give_back) request_.turn->give_back();
  if (request_.counters) --request_.counters->waiting;
  request_.context->notifier().post([self, done = std::move(done_), error = make_error_code(errc::closed)] {
    done(Outcome{error, nullptr, false, false, {}});
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
  bool has_turn = false;
  std::uint64_t ticket = 0;
  {
    MutexLock lock(mu_);
    if (ended_) return;
    has_turn = has_turn_;
    ticket = turn_ticket_;
  }
  // One try (mode_ try_once) ends by its result, or by a cancel.
  const bool expired = mode_ == QueueWait::Mode::wait && SteadyClock::now() >= request_.deadline;
  const bool give_up_now = request_.cancel.stop_requested() || expired;
  if (has_turn) return step_in_queue(give_up_now);
  if (!give_up_now && mode_ == QueueWait::Mode::wait) return;  // the turn's grant posts the next step
  // Still waiting for another holder of this process: nothing in etcd yet.
  if (!request_.turn || !request_.turn->withdraw(ticket)) return;  // granted meanwhile: its step follows
  finish(Outcome{not_acquired_error(), nullptr, false, false, {}});
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
        return finish(Outcome{not_acquired_error(), nullptr, false, false, wait_.key()});
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
      wait_.set_waker([weak = weak_from_this(), stepping = stepping_, steps = &request_.context->steps()] {
        if (stepping->ask_again()) return;
        steps->post([weak] {
          if (const auto self = weak.lock()) self->step();
        });
      });
      const auto decided = wait_.start(session_, requests_deadline_, mode_);
      if (!decided) {
        waiting_ = true;
        grace_over_ = false;
        post_step();  // what came while start() ran
        return;
      }
      return on_result(*decided, give_up_now);
    }
    const auto polled = wait_.poll(*session_, requests_deadline_, give_up_now, grace_over_);
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
      return finish(Outcome{error.code(), nullptr, false, false, wait_.key()});
    }
    if (mode_ == QueueWait::Mode::wait && SteadyClock::now() >= request_.deadline) {
      // The caller's deadline ended the request under way: a timeout, as
      // when it comes between requests.
      give_up();
      return finish(Outcome{not_acquired_error(), nullptr, false, false, wait_.key()});
    }
    const auto resume = retries_.next(requests_deadline_);
    if (!resume) {
      give_up();
      request_.context->log()(
          LogLevel::warning, description_ + " not acquired: etcd is unavailable",
          {{"name", request_.name}, {"attempts", std::to_string(retries_.failures())}, {"error", error.what()}});
      return finish(Outcome{error.code(), nullptr, false, false, wait_.key()});
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
      const auto& admitted = wait_.acquired();
      auto hold = std::make_shared<Hold>(request_.context, session_, admitted.entry, request_.kind, request_.name,
                                         request_.counters, admitted.successor);
      hold->start();
      if (hold->lost()) {
        hold->finish();  // its lease ended just now: queue again
        return post_step();
      }
      return finish(Outcome{{}, std::move(hold), admitted.waited, admitted.in_doubt, wait_.key()});
    }
    case QueueWait::Result::entry_lost:
      request_.context->log()(LogLevel::info, "queue entry lost while waiting; queueing again",
                              {{"name", request_.name}, {"key", wait_.key()}});
      return post_step();
    case QueueWait::Result::not_acquired:
      if (!give_up_now && mode_ == QueueWait::Mode::wait) return post_step();  // nothing to give up for: go on
      give_up();
      return finish(Outcome{not_acquired_error(), nullptr, false, false, wait_.key()});
  }
}

void AsyncAcquisition::give_up() noexcept {
  try {
    if (const auto entry = wait_.leftover(); entry && session_) {
      remove_entry(*request_.context, *entry, session_->lease_id());
    }
  } catch (const std::exception& error) {
    request_.context->log()(LogLevel::warning, "could not hand a leftover entry to its removal",
                            {{"name", request_.name}, {"error", error.what()}});
  }
}

void AsyncAcquisition::finish(Outcome outcome) {
  wait_.set_waker({});
  std::shared_ptr<AsyncAcquisition> self;
  bool give_back = false;
  {
    MutexLock lock(mu_);
    if (ended_) {
      // Closed while this step ran: the outcome went already.
      lock.unlock();
      if (outcome.hold) outcome.hold->finish();
      return;
    }
    ended_ = true;
    if (outcome.hold) turn_kept_ = true;
    // Not acquired: the turn goes back before the handler runs, which may
    // lock again (a blocking lock() there would wait for it for ever).
    give_back = has_turn_ && !outcome.hold && request_.turn;
    if (give_back) has_turn_ = false;
    self = std::move(self_);
    // Only a deadline's: step_deadlines() starts its thread when first asked for.
    if (deadline_task_ != 0) request_.context->step_deadlines().cancel(deadline_task_);
  }
  if (give_back) request_.turn->give_back();
  if (const auto& counters = request_.counters) {
    --counters->waiting;
    if (outcome.hold) {
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
