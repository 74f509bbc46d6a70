// The etcd requests of the lock protocol, built in one place so that the
// lock, the admin operations and the benchmark's raw floor send the same ones.
//
// A queue is every key under a lock's directory, ordered by create revision:
// the first is the holder, each of the others waits for the one before it,
// its predecessor.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "etcd/rpc.pb.h"
#include "keys/key_layout.h"

namespace etcdlock::detail {

namespace pb = ::etcdserverpb;

// How many keys a read of a queue returns at most: enough to find an entry's
// predecessor past the keys of longer lock names ("a/b" under "a").
inline constexpr std::int64_t kQueuePage = 64;

// One entry of a queue: its key and create revision.
struct QueueEntry {
  std::string key;
  std::int64_t revision = 0;
};

// The entry right behind a holder's that can take a hand-over note: the
// entry, its manager's inbox, and its lease, which the note key takes.
struct Successor {
  QueueEntry entry;
  std::string inbox;
  std::int64_t lease = 0;
};

// A lock's directory: "<prefix>/<name>/".
struct QueueDir {
  std::string dir;
  // The end of its key range, made when asked: every lock name keeps a
  // QueueDir, and the end is needed only to build a request.
  std::string end() const { return prefix_range_end(dir); }
};

// The queue's keys, oldest first; keys only.
pb::RangeRequest queue_range(const QueueDir& queue);

// etcd's default --max-txn-ops: no Txn may have more compares, or more
// operations in either branch, and a nested Txn gets what its parent leaves
// of it (the most of the parent's three). A multi-lock's enqueue has two
// success operations per name, so a set has at most half as many names.
inline constexpr std::size_t kMaxTxnOps = 128;
inline constexpr std::size_t kMaxMultiLockNames = kMaxTxnOps / 2;

// How to read the entries ahead of ours: at most `limit` of them, newest
// first, with or without their values.
struct AheadRead {
  std::int64_t limit = 1;
  bool values = false;
};

// etcd's recipe in one Txn: create `key` on `lease` unless it exists (a retry
// of a request that was applied). Success: [put, the newest keys of the
// queue, newest first: ours, then `ahead`]; failure: [range of key].
pb::TxnRequest enqueue_txn(const QueueDir& queue, const std::string& key, const std::string& value, std::int64_t lease,
                           const AheadRead& ahead);

// Create `key` only if the queue is empty. Success: [put]; failure: [range
// of key, the queue's first key].
pb::TxnRequest enqueue_if_empty_txn(const QueueDir& queue, const std::string& key, const std::string& value,
                                    std::int64_t lease);

// A multi-lock's enqueue: creates every key of `keys` on `lease` in one Txn,
// so that all of them get one create revision, unless any of them exists (a
// retry of a request that was applied, or a stray). Success: [puts, then the
// newest entries of each queue, in order, as enqueue_txn reads them: ours,
// then `ahead` before it]; failure: [range of each key, in order].
pb::TxnRequest multi_enqueue_txn(const std::vector<QueueDir>& queues, const std::vector<std::string>& keys,
                                 const std::string& value, std::int64_t lease, const AheadRead& ahead);

// Hand-over notes for one inbox, put only while every entry they are for is
// still the same entry.
struct InboxNotes {
  std::string inbox;
  std::int64_t lease = 0;  // the successors' lease, which the note key takes
  std::vector<QueueEntry> successors;
  std::string notes;  // their notes, in one value
};

// A multi-lock's release: deletes every entry of `own` while all of them are
// still the same entries, puts `notes` (each while its successors stand), and
// reads each queue's new first entry with its value. Success: [delete each,
// then the first entry of each queue, in order, then one Txn per element of
// `notes`]; failure: [range of each key, in order]. No two `notes` may name
// one inbox.
pb::TxnRequest multi_release_txn(const std::vector<QueueDir>& queues, const std::vector<QueueEntry>& own,
                                 std::span<const InboxNotes> notes = {});
// Puts `notes`, each while its successors stand: one Txn per element, nested.
pb::TxnRequest notes_txn(std::span<const InboxNotes> notes);

// A Txn whose success branch runs only while every entry of `own` exists
// with its create revision: a multi-lock's hold that is still the same one.
pb::TxnRequest while_all_created_at(const std::vector<QueueEntry>& own);

// A read, in one revision, of `own` (still there?) and of the keys created
// before `below`, newest first, as `ahead` says (own's predecessors, when
// `below` is own's revision). Responses: [own, predecessors].
pb::TxnRequest ahead_read(const QueueDir& queue, const QueueEntry& own, std::int64_t below, const AheadRead& ahead);

// A Txn whose success branch runs only while `key` exists with create
// revision `revision`: a hold, or an entry, that is still the same one.
pb::TxnRequest while_created_at(const std::string& key, std::int64_t revision);

// Leaves a queue: deletes `own` if it is still the same entry, and reads the
// queue's new first entry with its value. Success: [delete, first entry].
pb::TxnRequest release_txn(const QueueDir& queue, const QueueEntry& own);

// Removes `own`, an entry that nothing claims, if it is still the same
// entry, and reads the queue's first entry with its value whether or not it
// was. Success: [delete, first entry]; failure: [first entry].
pb::TxnRequest removal_txn(const QueueDir& queue, const QueueEntry& own);

// A read, in one revision, of `key` and of the queue's first entry with its
// value. Responses: [key, first entry].
pb::TxnRequest entry_and_first_read(const QueueDir& queue, const std::string& key);

// The first two entries of a queue with their values: a holder and its successor.
pb::RangeRequest head_read(const QueueDir& queue);

// `own` and the entries created after it, oldest first, with their values:
// at most kOwnAndNextPage keys (see own_and_next_read's use in queue_wait.cc).
inline constexpr std::int64_t kOwnAndNextPage = 3;
pb::RangeRequest own_and_next_read(const QueueDir& queue, const QueueEntry& own);

// Hands a lock over: deletes the holder's entry and, in the same revision and
// only while `successor` is still the same entry, puts `note` into its inbox
// on its lease; if the successor went, reads the `limit` entries that hold
// after the delete instead. Success: [Txn{success: [delete, put]; failure:
// [delete, the first `limit` entries with their values]}].
pb::TxnRequest hand_over_txn(const QueueDir& queue, const QueueEntry& holder, const Successor& successor,
                             std::int64_t limit, const std::string& note);

// Puts `note` into the inbox of `successor`, which holds the lock now, while
// it is still the same entry.
pb::TxnRequest note_txn(const QueueEntry& successor, const std::string& inbox, std::int64_t successor_lease,
                        const std::string& note);

}  // namespace etcdlock::detail
