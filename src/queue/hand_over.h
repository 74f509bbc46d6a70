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
// Notes are an accelerator, never the only way: a waiter also watches its
// predecessor, so holders that write no notes (etcdctl, Go's Mutex, a crashed
// process, an expired lease) hand over too.

#pragma once

#include <cstdint>

#include "etcd/client.h"
#include "keys/queue_requests.h"

namespace etcdlock::detail {

// What releasing an entry found.
struct Release {
  bool entry_was_there = false;  // false: someone else deleted it first (the hold was lost)
  bool successor_seen = false;   // an entry was waiting for the slot
};

// Releases `own`, one of the first `slots` entries of `queue` (1 for a lock),
// if it is still the same entry, and hands its slot to the entry that waits
// for it: with a note in its manager's inbox, in the same Txn when
// `read_head_first` (one read, then one write; worth it when a successor is
// likely), else in a second Txn once the delete shows one. Entries without an
// inbox (etcdctl, Go's Mutex) learn of their turn from their own watch.
// Throws Error only for the delete: errc::unavailable when whether it
// happened is unknown. A read or a note that fails costs only the note.
Release release_and_hand_over(const etcd::Client& client, const QueueDir& queue, const QueueEntry& own,
                              std::int64_t slots, bool read_head_first);

}  // namespace etcdlock::detail
