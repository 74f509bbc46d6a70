// Hand-over: how a releasing holder tells the next waiter that its turn has
// come, with one watch event and no read.
//
// Each manager watches one key of its own, its inbox (session/inbox.h). A
// waiter advertises its manager's inbox in the value of its queue entry. A
// releasing holder that finds such a successor deletes its own entry and puts
// a note into the successor's inbox in one Txn, guarded by the successor's
// create revision: at that revision the successor's entry exists and is first
// in the queue, so it holds the lock as soon as the note arrives.
//
// Who the successor is, a lock's holder learns without a read of its own:
// the read that confirms a note (queue_wait.cc) also returns the entry right
// behind the holder's. Entries are ordered by create revision and a new one
// is always created last, so while that entry stands it stays the first
// behind the holder, and the compare on its create revision is all the
// release needs. A holder admitted without a note (no wait, or a blocker's
// delete) reads the head of the queue first when a successor is likely.
//
// Notes are an accelerator, never the only way: a waiter also watches its
// predecessor, so holders that write no notes (etcdctl, Go's Mutex, a crashed
// process, an expired lease) hand over too.

#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <system_error>
#include <vector>

#include "etcd/client.h"
#include "keys/queue_requests.h"
#include "queue/hold.h"
#include "queue/named_queue.h"
#include "queue/primitive_context.h"

namespace etcdlock::detail {

// What releasing an entry found.
struct Release {
  bool entry_was_there = false;  // false: someone else deleted it first (the hold was lost)
  bool successor_seen = false;   // an entry was waiting for the slot
};

// Releases `own`, one of the first `limit` entries of `queue` (1 for a lock),
// if it is still the same entry, and hands its slot to the entry that waits
// for it: with a note in its manager's inbox, in the same Txn when the
// successor is known (`known_successor`, a lock's only: the entry right
// behind `own` that the read confirming the hold found) or `read_head_first`
// (one read, then one write; worth it when a successor is likely), else in a
// second Txn once the delete shows one. Entries without an inbox (etcdctl,
// Go's Mutex) learn of their turn from their own watch.
// Throws Error only for the delete: errc::unavailable when whether it
// happened is unknown. A read or a note that fails costs only the note.
Release release_and_hand_over(const etcd::Client& client, const QueueDir& queue, const QueueEntry& own,
                              std::int64_t limit, bool read_head_first, const Successor* known_successor = nullptr);

// Whether the entry `key` of `queue` (a lock's), whose value is `value`,
// leaves the entry behind it a note when it releases the lock: an etcdlock
// lock's or multi-lock's entry, whose value names its manager's inbox. Such
// an entry that goes otherwise (its lease lost or revoked, a force unlock, a
// crash, a waiter giving up) leaves none.
bool leaves_a_note(const QueueDir& queue, std::string_view key, std::string_view value);

// A queue in which a closing manager had entries, the first created at
// `first_own`.
struct VacatedQueue {
  QueueDir queue;
  std::int64_t first_own = 0;
};

// After a close revoked the lease of a manager that held or waited for locks
// of `queues`, their entries went without notes: tells each queue's new
// head, if it was behind our first entry (so it waited, and holds now) and is
// a lock's or multi-lock's waiter of another manager (`own_inbox` is the
// closing one's), of its turn. With `revoke_revision` (the revoke's, 0 when
// not known), a head created after it is not told: it found our entries gone
// when it read its queue, and waited for none of them. The heads are read in
// Txns of up to kMaxTxnOps reads, then each gets its note, all by
// `deadline`; a head would otherwise see the delete only once its deferred
// watch of our entry starts (queue_wait.h). The lease must be known gone: a
// read that still found our entry would note no one. Never throws: a note is
// an accelerator, and the waiter's own watch covers a failed one.
void note_new_heads_after_revoke(const etcd::Client& client, const std::vector<VacatedQueue>& queues,
                                 std::int64_t revoke_revision, std::string_view own_inbox,
                                 SteadyTime deadline) noexcept;

// After our entry of `queue` created at `gone_revision` went without a note
// (removed as a stray, or deleted by a release whose answer never came):
// `first` is a read of the queue's first entry made once it was gone. If
// that entry was behind ours and is a lock's waiter that takes notes, it
// holds now and may have waited for ours: it is told so, asynchronously,
// while it is the same entry. Call it from a thread that may block (not a
// gRPC callback): the note is sent asynchronously, but a client that uses
// authentication may first fetch a token. Never throws: a note is an
// accelerator, and the waiter's own watch (deferred, queue_wait.h) covers a
// failed one; a note it already got is harmless (a waiter acts on the one
// for its own entry's revision, once).
void note_first_behind(const etcd::Client& client, const QueueDir& queue, const pb::RangeResponse& first,
                       std::int64_t gone_revision) noexcept;

// What a read of own_and_next_read(queue, own) found.
struct OwnAndNext {
  // Whether `own` still stands; nullopt when the page filled up before it
  // (keys created in our own revision came first): a read of `own` alone
  // tells.
  std::optional<bool> own_stands;
  // The entry right behind `own`, when it can take a note and no other key
  // shares `own`'s create revision (which would stay ahead of it).
  std::optional<Successor> next;
};
OwnAndNext own_and_next(const QueueDir& queue, const QueueEntry& own, const pb::RangeResponse& read);

// What releasing a multi-lock's entries found.
struct MultiRelease {
  bool all_were_there = false;    // false: an entry was deleted first (the hold was lost)
  std::vector<bool> still_there;  // when not all were: which entries still stand, per queue
  bool successor_seen = false;    // some queue had an entry waiting
};

// Releases `own`, one entry per queue of `queues`, each first in its queue,
// in one Txn while every one is still the same entry, and tells each queue's
// next entry of its turn with a note, one per inbox. With
// `read_heads_first`, each queue's head is read first (serializable, as
// release_and_hand_over does) and the notes go in the release's Txn: one
// write in all. A successor not seen so gets its note in a second write.
// Throws Error only for the delete, as release_and_hand_over.
MultiRelease release_all_and_hand_over(const etcd::Client& client, const std::vector<QueueDir>& queues,
                                       const std::vector<QueueEntry>& own, bool read_heads_first);

// The releases of one queue's holds by one primitive: Hold::give_up with
// release_and_hand_over as its removal, reading the queue first only while
// successors are likely (an acquisition waited, or the last release found
// one), so that an uncontended release stays one Txn.
//
// Thread-safe: its one state is a hint in an atomic.
class HandOverReleaser {
 public:
  // `named`: the queue of the primitive that owns this releaser, which
  // outlives it. `limit`: how many entries hold at once (1 for a lock, the
  // limit of a semaphore).
  HandOverReleaser(const NamedQueue& named, std::int64_t limit) : named_(named), limit_(limit) {}

  // An acquisition waited behind another entry: others are likely to wait
  // behind the next release too.
  void expect_successor() { expect_successor_.store(true, std::memory_order_relaxed); }
  // Ends `hold` in etcd and hands its slot on; `ec` as Hold::give_up says.
  void release(Hold& hold, bool in_doubt, std::error_code& ec) noexcept;

 private:
  // A reference, not copies of the queue's strings: every lock name has a
  // releaser, and a manager may hold ten thousand of them.
  const NamedQueue& named_;
  const std::int64_t limit_;
  // A hint (whether the release reads the head first), guarding nothing else.
  std::atomic<bool> expect_successor_{false};
};

}  // namespace etcdlock::detail
