// ExclusiveHold: one entry of a name's queue in etcd, used by one thread of
// this process at a time: what a Lock and an Election share.
//
// Two levels of exclusion. Locally, one thread at a time has the Turn: it
// acquires (QueueAcquisition), holds (Hold) once its entry is first, and gives
// the hold up (Hold::give_up) before it gives the turn back. Threads of one
// process share the lease, hence the key, so etcd cannot tell them apart.
//
// The hold is set and taken away only by the turn's owner (or by a destructor,
// when no thread can be inside); any thread may read it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>

#include "base/mutex.h"
#include "base/retry_budget.h"
#include "etcdlock/options.h"
#include "keys/queue_requests.h"
#include "queue/async_acquisition.h"
#include "queue/hold.h"
#include "queue/named_queue.h"
#include "queue/queue_wait.h"
#include "queue/turn.h"

namespace etcdlock::detail {

// Thread-safe. Its mutex is taken after its owner's, never before; no request
// to etcd is made under it.
class ExclusiveHold {
 public:
  // `kind` labels counters ("lock", "election"; a literal, which the turn
  // keeps); `acquisition` names what is acquired in messages ("lock",
  // "leadership").
  ExclusiveHold(std::shared_ptr<PrimitiveContext> context, std::string_view kind, std::string name,
                std::string acquisition);

  const NamedQueue& named() const { return named_; }
  PrimitiveContext& context() const { return *named_.context; }

  // The turn: see Turn.
  bool take_turn(SteadyTime deadline, const std::stop_token& cancel, bool wait) {
    return turn_.take(deadline, cancel, wait);
  }
  void give_back_turn() { turn_.give_back(); }
  bool turn_owned_by_this_thread() const { return turn_.owned_by_this_thread(); }
  // For an asynchronous acquisition, which takes the turn as a waiter of its own.
  Turn& turn() { return turn_; }

  struct Outcome {
    bool held = false;    // the hold is this object's now
    bool waited = false;  // an entry was ahead of ours at some point
    std::string key;      // the attempt's key, once it had a session
  };
  // By the turn's owner: queues `entry` and waits until it is first (see
  // QueueAcquisition::run). Throws Error.
  Outcome acquire(QueueWait::Entry entry, RetryPolicy retry, SteadyTime deadline, const std::stop_token& cancel,
                  QueueWait::Mode mode) ETCDLOCK_EXCLUDES(mu_);

  // Queues `entry` and waits as acquire() does, without a thread
  // (AsyncAcquisition), taking the turn as a waiter of its own; `owner` keeps
  // this object alive until `done` has run. The outcome's hold is adopt()ed
  // by `done`, or nobody's.
  void async_acquire(QueueWait::Entry entry, RetryPolicy retry, std::shared_ptr<const void> owner, SteadyTime deadline,
                     std::stop_token cancel, AsyncAcquisition::Done done);
  // By the turn's owner: `hold`, acquired without acquire() (an asynchronous
  // acquisition), is this object's now.
  void adopt(std::shared_ptr<Hold> hold, bool in_doubt) ETCDLOCK_EXCLUDES(mu_);

  struct Taken {
    std::shared_ptr<Hold> hold;  // null when none
    bool in_doubt = false;       // its key is retired when it is given up
  };
  // By the turn's owner: the hold leaves this object, to be given up.
  Taken take() ETCDLOCK_EXCLUDES(mu_);
  // As take(), only when the hold is `hold`; else nothing.
  Taken take_if(const std::shared_ptr<Hold>& hold) ETCDLOCK_EXCLUDES(mu_);

  std::shared_ptr<Hold> hold() const ETCDLOCK_EXCLUDES(mu_);
  // Held and not lost.
  bool held() const ETCDLOCK_EXCLUDES(mu_);
  std::stop_token lost_token() const ETCDLOCK_EXCLUDES(mu_);
  // The entry's create revision while held and not lost, else 0.
  std::int64_t fencing_token() const ETCDLOCK_EXCLUDES(mu_);
  // Writes that commit only while the entry stands (guarded_write.h).
  bool guarded_put(std::string_view key, std::string_view value) ETCDLOCK_EXCLUDES(mu_);
  bool guarded_delete(std::string_view key) ETCDLOCK_EXCLUDES(mu_);
  // The same, while `hold` stands (a hold object's own writes).
  bool guarded_put(const Hold& hold, std::string_view key, std::string_view value);
  bool guarded_delete(const Hold& hold, std::string_view key);

 private:
  std::optional<pb::TxnRequest> guarded_txn() const ETCDLOCK_EXCLUDES(mu_);

  const NamedQueue named_;
  const std::string acquisition_;
  Turn turn_;

  mutable Mutex mu_;
  std::shared_ptr<Hold> hold_ ETCDLOCK_GUARDED_BY(mu_);  // the turn's owner's hold
  bool in_doubt_ ETCDLOCK_GUARDED_BY(mu_) = false;
};

}  // namespace etcdlock::detail
