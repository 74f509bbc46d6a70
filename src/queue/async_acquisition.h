// AsyncAcquisition: a queue acquisition that no thread waits for. It does
// what QueueAcquisition does (take the turns, take a place in the queue, wait,
// retry transient failures, queue again on a new lease, leave no entry behind
// when it gives up) in steps: each step runs on one of the manager's step
// threads (PrimitiveContext::steps()), makes at most a few requests to etcd,
// and ends; what it waits for (the turn, a note, a change ahead, a timer)
// posts the next step. So any number of pending acquisitions costs no
// thread. A step whose request etcd does not answer holds up its own
// acquisition only, as long as fewer than kStepThreads are stuck at once
// (with etcd unreachable, all are); a deadline or cancel of an acquisition
// that has sent nothing yet is decided without a step, on time.
//
// The rules are QueueWait's own (start() and poll() are run() in steps), so
// the synchronous and the asynchronous acquisition make the same writes with
// the same compares, and the lost-reply matrix covers both. What it does in
// etcd is a QueueAttempt: one queue's entry, or a multi-lock's entries in
// several queues (multi_acquisition.h), whose local turns it takes one
// after another, in the order given.
//
// Exactly one outcome is delivered, on a notifier thread: after the entry it
// leaves (if any) went to the removal, or at once when the manager closes
// (closing revokes the lease, and with it every entry).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <system_error>
#include <vector>

#include "base/mutex.h"
#include "base/retry_budget.h"
#include "queue/hold.h"
#include "queue/primitive_context.h"
#include "queue/queue_attempt.h"
#include "queue/queue_wait.h"
#include "queue/turn.h"

namespace etcdlock::detail {

// Thread-safe.
class AsyncAcquisition : public std::enable_shared_from_this<AsyncAcquisition> {
 public:
  struct Outcome {
    std::error_code error;                     // none when acquired
    std::vector<std::shared_ptr<Hold>> holds;  // every queue's, started, in order; none unless acquired
    bool waited = false;                       // an entry was ahead of ours at some point
    bool in_doubt = false;                     // a create went unanswered: retire the key when the hold ends
    std::string key;                           // the attempt's key, once it had a session

    bool acquired() const noexcept { return !holds.empty(); }
    // The first queue's hold: the only one but for a multi-lock's. acquired() only.
    std::shared_ptr<Hold>& hold() { return holds.front(); }
  };
  // Called once, on a notifier thread, with the turns still taken when
  // acquired (the hold's owner gives them back), given back otherwise.
  using Done = std::function<void(Outcome)>;

  struct Request {
    std::shared_ptr<PrimitiveContext> context;
    std::string kind;  // "lock", "leadership": in messages
    std::string name;
    RetryPolicy retry;
    std::shared_ptr<PrimitiveCounters> counters;  // may be null
    // The names' turns, kept alive by `owner`, taken in this order (a
    // multi-lock's: its sorted names'); none for a permit.
    std::vector<Turn*> turns;
    std::shared_ptr<const void> owner;  // what owns the turns
    SteadyTime deadline = SteadyTime::max();
    std::stop_token cancel;
  };
  // Starts an acquisition that does `attempt` in etcd; `done` gets its
  // outcome (errc::closed, soon, when the manager is closed already).
  static void start(Request request, std::unique_ptr<QueueAttempt> attempt, Done done);
  // The same, for `entry` in one queue.
  static void start(Request request, QueueDir queue, QueueWait::Entry entry, Done done);

  // Gives the turns back unless the outcome handed them to a hold.
  ~AsyncAcquisition();

  // Public for make_shared; use start().
  AsyncAcquisition(Request request, std::unique_ptr<QueueAttempt> attempt, Done done);

 private:
  void begin();
  // Takes the turns from turns_taken_ on while they are free; queues for the
  // first that is not (its grant goes on from there); posts the first step
  // once all are taken.
  void take_turns() ETCDLOCK_EXCLUDES(mu_);
  // take_turns() with mu_ held: true when a step is due.
  bool take_free_turns() ETCDLOCK_REQUIRES(mu_);
  // A grant of turn `index`: false when the acquisition is over (the turn passes on).
  bool on_turn(std::size_t index) ETCDLOCK_EXCLUDES(mu_);
  bool has_turns() const ETCDLOCK_REQUIRES(mu_) { return turns_taken_ == request_.turns.size(); }
  // The turns taken, in reverse order; with mu_ released.
  void give_back_turns(std::size_t taken) noexcept;
  // The manager closed: deliver `closed` now (the steps may never run again).
  void on_closed();
  // The deadline came or the caller cancelled: ends the acquisition here when
  // nothing of it went to etcd yet, else posts the step that gives it up. So
  // a deadline or cancel is answered on time even while every step thread
  // waits in a request that etcd does not answer; only an acquisition whose
  // own request is stuck answers late (at most the command timeout).
  void give_up_soon();
  // With the steps held off: true when the acquisition ended (now, or before).
  bool end_if_nothing_sent();
  // Posts a step; `at` later, or now.
  void post_step(SteadyTime at = SteadyTime::min());
  // Runs the steps due: one at a time for this acquisition, though the
  // step threads run those of others meanwhile.
  void step();
  void one_step();
  // One step with the turn taken: the part that talks to etcd.
  void step_in_queue(bool give_up_now);
  void on_result(QueueWait::Result result, bool give_up_now);
  // Removes what the attempt may have left in etcd.
  void give_up() noexcept;
  // Ends the acquisition with `outcome`, unless it ended already (closed):
  // then a hold it got is given back at once.
  void finish(Outcome outcome);
  std::error_code not_acquired_error() const;

  const Request request_;
  // As the blocking calls: a deadline passed already makes it one try,
  // whose requests have the command timeout.
  const QueueWait::Mode mode_;
  const SteadyTime requests_deadline_;
  Done done_;
  const std::unique_ptr<QueueAttempt> attempt_;
  const std::string description_;  // the attempt's
  RetryBudget retries_;
  const SteadyTime started_ = SteadyClock::now();

  // Keeps this acquisition's steps one at a time, on whichever step thread;
  // shared with the waker, which holds the acquisition only weakly.
  struct Stepping {
    Mutex mu;
    bool running ETCDLOCK_GUARDED_BY(mu) = false;  // a step runs
    bool again ETCDLOCK_GUARDED_BY(mu) = false;    // a step was asked for meanwhile
    // True when a step runs: it will run again once done, no task needed.
    bool ask_again() ETCDLOCK_EXCLUDES(mu);
  };
  const std::shared_ptr<Stepping> stepping_ = std::make_shared<Stepping>();

  // Step state: touched only by steps, which run one at a time (step()).
  std::shared_ptr<Session> session_;
  bool waiting_ = false;     // start() said the entry waits: poll() goes on
  bool grace_over_ = false;  // the grace poll() asked for has passed
  std::optional<std::stop_callback<std::function<void()>>> on_session_lost_;

  Mutex mu_;
  bool ended_ ETCDLOCK_GUARDED_BY(mu_) = false;
  std::size_t turns_taken_ ETCDLOCK_GUARDED_BY(mu_) = 0;  // request_.turns[0, turns_taken_) are ours
  bool turns_kept_ ETCDLOCK_GUARDED_BY(mu_) = false;      // handed to the hold
  // Queued for request_.turns[turns_taken_]; 0 while none is (ticket ids
  // start at 1, and each turn counts its own: one turn's must never be
  // withdrawn from another).
  std::uint64_t turn_ticket_ ETCDLOCK_GUARDED_BY(mu_) = 0;
  std::uint64_t deadline_task_ ETCDLOCK_GUARDED_BY(mu_) = 0;
  std::shared_ptr<AsyncAcquisition> self_ ETCDLOCK_GUARDED_BY(mu_);  // until it ends

  // Last: destroyed first, so that no callback runs into a half-destroyed object.
  std::optional<std::stop_callback<std::function<void()>>> on_cancel_;
  std::optional<std::stop_callback<std::function<void()>>> on_closed_;
};

}  // namespace etcdlock::detail
