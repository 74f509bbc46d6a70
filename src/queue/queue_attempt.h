// QueueAttempt: the part of an acquisition that talks to etcd, in steps that
// never wait: take a place in one queue (OneQueueAttempt) or in several at
// once (MultiAcquisition), then go on whenever something changes, until
// admitted. An asynchronous acquisition (async_acquisition.h) drives it:
// it takes the local turns first, retries transient failures, queues again
// on a new lease, keeps time and cancellation, and delivers the outcome.
// The blocking acquisition (queue_acquisition.h) runs a OneQueueAttempt
// in its caller's thread instead (OneQueueAttempt::run), so that both make
// their holds, log their requeues and leave their leftovers alike.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "queue/hold.h"
#include "queue/queue_wait.h"
#include "session/session.h"

namespace etcdlock::detail {

// Not thread-safe: its steps run one at a time.
class QueueAttempt {
 public:
  // What an admitted attempt holds.
  struct Held {
    std::vector<std::shared_ptr<Hold>> holds;  // one per queue, started
    bool waited = false;                       // an entry was ahead of ours at some point
    bool in_doubt = false;                     // a create went unanswered: retire the keys when the hold ends
  };

  virtual ~QueueAttempt() = default;

  // As QueueWait's (queue_wait.h): called, on whichever thread signals,
  // when poll() may have something to act on.
  virtual void set_waker(std::function<void()> waker) = 0;
  // As QueueWait::start: a place in the queues on `session`'s lease, and a
  // result, or nullopt while the entry waits. After entry_lost (which the
  // attempt has logged, with its cause) the next start() queues again, with
  // fresh keys. Throws as QueueWait::run.
  virtual std::optional<QueueWait::Result> start(const std::shared_ptr<Session>& session, SteadyTime deadline,
                                                 QueueWait::Mode mode) = 0;
  // As QueueWait::poll; an entry_lost is logged, as start()'s.
  virtual QueueWait::Poll poll(const Session& session, SteadyTime deadline, bool give_up_now, bool grace_over) = 0;
  // Once start() or poll() said acquired: the holds on `session`, started;
  // nullopt when one was lost as it began (its lease ended just now), and
  // the next start() queues again.
  virtual std::optional<Held> take_holds(const std::shared_ptr<Session>& session) = 0;
  // Hands what the attempt may have left in etcd to the removal; `session`
  // is the one it last tried on (null: none). Never throws.
  virtual void give_up(const Session* session) noexcept = 0;
  // The key of the entry (the first queue's), for messages and Lock::key().
  virtual std::string key() const = 0;
  // What is acquired, in messages: "lock \"jobs\"".
  virtual std::string description() const = 0;
};

// One entry in one queue: QueueWait's rules as they are.
class OneQueueAttempt final : public QueueAttempt {
 public:
  // `kind` ("lock") and `name` for the hold's messages; `counters` may be null.
  OneQueueAttempt(std::shared_ptr<PrimitiveContext> context, QueueDir queue, QueueWait::Entry entry, std::string kind,
                  std::string name, std::shared_ptr<PrimitiveCounters> counters);

  // The blocking form of start() and poll() (QueueWait::run), for
  // QueueAcquisition: the same logging of a lost entry, the same holds.
  QueueWait::Result run(const std::shared_ptr<Session>& session, SteadyTime deadline, const std::stop_token& cancel,
                        QueueWait::Mode mode);

  void set_waker(std::function<void()> waker) override { wait_.set_waker(std::move(waker)); }
  std::optional<QueueWait::Result> start(const std::shared_ptr<Session>& session, SteadyTime deadline,
                                         QueueWait::Mode mode) override;
  QueueWait::Poll poll(const Session& session, SteadyTime deadline, bool give_up_now, bool grace_over) override;
  std::optional<Held> take_holds(const std::shared_ptr<Session>& session) override;
  void give_up(const Session* session) noexcept override;
  std::string key() const override { return wait_.key(); }
  std::string description() const override;

 private:
  void log_if_lost(QueueWait::Result result) const;

  const std::shared_ptr<PrimitiveContext> context_;
  const std::string kind_;
  const std::string name_;
  const std::shared_ptr<PrimitiveCounters> counters_;
  QueueWait wait_;
};

}  // namespace etcdlock::detail
