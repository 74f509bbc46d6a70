// QueueWait: one thread's attempt to take a lock in its etcd queue: enqueue,
// wait for the turn, and confirm it.
//
// The queue is etcd's recipe: every entry under the lock's directory, by
// create revision; the first holds the lock. An entry waits for the one just
// before it, its predecessor, so a hand-over costs each waiter nothing but its
// own successor's wake-up, however long the queue. The turn comes in one of
// two ways:
//   - a hand-over note in the manager's inbox (see hand_over.h), written by a
//     releasing etcdlock holder in the same Txn as its delete and guarded by
//     our entry's create revision: we are first at that revision, no read
//     needed. This is the fast path, on a watch that has long been in sync.
//   - our predecessor's deletion, seen on a watch of its key from the revision
//     we read it at, so no deletion is missed. Then one read, in one revision,
//     of our own entry (still there, with the same create revision? etcd's
//     own Mutex once forgot this, etcd issue 11456) and of the entries before
//     it: none means we hold the lock; otherwise we wait for the new
//     predecessor. Such a watch, created moments ago, may lag by up to
//     100 ms (etcd catches up new watchers in a loop every 100 ms), which is
//     why the note exists; it is what covers holders that write no notes
//     (etcdctl, Go's Mutex, a crashed process) and waiters that leave.
// A watch gap (compacted history) or a missed note leads to the same read.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>

#include "fence.h"
#include "lock_context.h"
#include "queue_requests.h"
#include "session.h"

namespace etcdlock::detail {

class QueueWait {
 public:
  enum class Mode {
    wait,      // wait in the queue until the deadline
    try_once,  // never wait: give up when someone else is first
  };
  enum class Result {
    acquired,      // our entry is first: see acquired()
    not_acquired,  // someone else is first (try_once), the deadline passed, or `cancel` was requested
    entry_lost,    // our entry is gone (its lease was lost, or it was deleted): queue again
  };
  struct Acquired {
    QueueEntry entry;
    bool waited = false;            // an entry was ahead of ours at some point
    bool in_doubt = false;          // a create went unanswered: the hold ends by closing the fence
  };
  // An entry this wait may have left in etcd.
  struct Leftover {
    QueueEntry entry;       // revision 0 when its creation is in doubt
    bool in_doubt = false;  // a create went unanswered: remove it by closing the fence
  };

  // `value` is what our entry will hold: the lock's holder value, or an
  // election's proposal. `fence` guards the name's creates (fence.h).
  QueueWait(std::shared_ptr<LockContext> context, QueueDir queue, Fence& fence, std::string value);
  // Stops watching and forgets the inbox; never deletes anything.
  ~QueueWait();
  QueueWait(const QueueWait&) = delete;
  QueueWait& operator=(const QueueWait&) = delete;

  // Takes, or keeps, a place in the queue on `session`'s lease and waits for
  // the turn until `deadline`. May be called again after it threw (etcd
  // unavailable): an entry it created is found again and keeps its place.
  // Throws Error: unavailable, closed, permission_denied; etcd::LeaseNotFound.
  Result run(const std::shared_ptr<Session>& session, SteadyTime deadline, std::stop_token cancel, Mode mode);
  const Acquired& acquired() const { return acquired_; }

  // The entry this wait may have left in etcd when it did not acquire, to be
  // removed; nullopt when there is none.
  std::optional<Leftover> leftover() const;
  // The key of our entry, or of the one we are about to create.
  const std::string& key() const { return key_; }

 private:
  struct Signals;
  class PredecessorWatch;
  struct Read {
    std::optional<QueueEntry> predecessor;
    std::int64_t revision = 0;
  };

  void begin(const Session& session);
  // Sends a Txn that may create our entry; no reply puts the attempt in doubt.
  pb::TxnResponse send_create(const pb::TxnRequest& txn, SteadyTime deadline);
  // Learns the fence from a create's failure branch (its last response); true
  // when it moved since `sent_version`, so the create must go again.
  bool fence_moved(const Session& session, const pb::TxnResponse& response, std::int64_t sent_version);
  // The Txns that create our entry; they set own_ and return what is ahead
  // of it (try_first: nullopt when someone else is first; enqueue: nullopt
  // when our entry is gone).
  std::optional<Read> try_first(const Session& session, SteadyTime deadline);
  std::optional<Read> enqueue(const Session& session, SteadyTime deadline);
  // Our entry and its predecessor, read in one revision; nullopt when our
  // entry is gone.
  std::optional<Read> read_predecessor(SteadyTime deadline);
  Result wait_for_turn(const Session& session, Read read, SteadyTime deadline, std::stop_token cancel);
  void watch_predecessor(const Read& read);
  void stop_watching();
  Result acquire();
  Result lose_entry();

  const std::shared_ptr<LockContext> context_;
  const QueueDir queue_;
  Fence& fence_;
  const std::string value_;
  const std::shared_ptr<Signals> signals_;
  std::string key_;                    // our entry's key on the current lease
  std::optional<QueueEntry> own_;      // our entry, once a Txn told us it exists
  bool create_sent_ = false;           // a create of key_ went out: it may exist
  bool in_doubt_ = false;              // a create of key_ went unanswered
  bool waited_ = false;
  std::string predecessor_key_;        // the key we watch; empty when none
  std::int64_t predecessor_watch_ = 0;
  Acquired acquired_;
};

}  // namespace etcdlock::detail
