// QueueWait: one thread's attempt to take a place in a name's etcd queue:
// enqueue, wait until it is admitted (see admission.h), and confirm it.
//
// The queue is etcd's recipe: every entry under the name's directory, by
// create revision. An entry waits only for the few entries whose going can
// admit it (for a lock, its predecessor), so a hand-over costs each waiter
// nothing but its own wake-up, however long the queue. Admission comes in one
// of two ways:
//   - a hand-over note in the manager's inbox (see hand_over.h), written by a
//     releasing etcdlock holder in the same Txn as its delete and guarded by
//     our entry's create revision: we were admitted at that revision. A note
//     may arrive late (a stalled connection), after our entry was deleted
//     and the next waiter let in, so it is acted on only once a read of our
//     own key shows the entry still there. This is the fast path, on a watch
//     that has long been in sync.
//   - the deletion (or change) of an entry we watch, seen on a watch of its
//     key from the revision we read it at, so none is missed. Then one read,
//     in one revision, of our own entry (still there, with the same create
//     revision? etcd's own Mutex once forgot this, etcd issue 11456) and of
//     the entries ahead: admitted, or a new set to watch. Such a watch,
//     created moments ago, may lag by up to 100 ms (etcd catches up new
//     watchers in a loop every 100 ms), which is why the note exists; it is
//     what covers holders that write no notes (etcdctl, Go's Mutex, a
//     crashed process) and waiters that leave.
// A watch gap (compacted history) or a missed note leads to the same read.
//
// A lock's or multi-lock's waiter whose predecessor is an etcdlock lock's
// entry, which leaves a note when it releases, starts that watch only
// kPredecessorWatchDelay after its read, from the revision after it, so it
// misses nothing: a predecessor gone by then, whatever way, is seen as
// before. Under contention most waits are shorter than that, and the note
// alone admits them: no watch to create and cancel, no event of the
// predecessor's delete, no watch that etcd must catch up from the past. The
// cost: a predecessor that goes without a note in that time (its lease lost
// or revoked, a force unlock, a waiter that gives up) is seen up to that
// much later. A wait whose deadline comes first watches at once: deferred,
// it would time out behind a lock gone free.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "keys/queue_requests.h"
#include "queue/admission.h"
#include "queue/entry_removal.h"
#include "queue/primitive_context.h"
#include "session/session.h"

namespace etcdlock::detail {

struct WaitSignals;

class QueueWait {
 public:
  enum class Mode {
    wait,      // wait in the queue until the deadline
    try_once,  // never wait: give up unless admitted at once
  };
  enum class Result {
    acquired,      // our entry is admitted: see acquired()
    not_acquired,  // not admitted at once (try_once), the deadline passed, or `cancel` was requested
    entry_lost,    // our entry is gone (its lease was lost, or it was deleted): queue again
  };
  struct Acquired {
    QueueEntry entry;
    bool waited = false;    // an entry held us back at some point
    bool in_doubt = false;  // a create went unanswered: it may land after the hold ends (retire the key then)
    // The entry right behind ours when it was admitted, if it can take a
    // note: read with the confirmation of a note, for a lock's release.
    std::optional<Successor> successor;
  };
  // What our entry is.
  struct Entry {
    std::string value;       // the holder value, or an election's proposal
    std::string key_suffix;  // after the lease id: "" for one entry per lease, "-<n>" for several
    Admission admission = Admission::exclusive();
    // Called with the values of the entries ahead that the first read
    // returned (when the admission reads values); may throw to refuse the
    // queue (a semaphore whose limit differs).
    std::function<void(const std::vector<std::string>& values)> check_ahead;
    // The entry's value names the manager's inbox: it takes hand-over notes.
    bool takes_notes = true;
    // A note admits the entry without the read that confirms it is still
    // there: the caller confirms it (a multi-lock reads all its entries at
    // once when the last queue admits it).
    bool caller_confirms_notes = false;
  };

  QueueWait(std::shared_ptr<PrimitiveContext> context, QueueDir queue, Entry entry);
  // Stops watching and forgets the inbox; never deletes anything.
  ~QueueWait();
  QueueWait(const QueueWait&) = delete;
  QueueWait& operator=(const QueueWait&) = delete;

  // Takes, or keeps, a place in the queue on `session`'s lease and waits to
  // be admitted until `deadline`. May be called again after it threw (etcd
  // unavailable): an entry it created is found again and keeps its place.
  // Throws Error: unavailable, closed, permission_denied; etcd::LeaseNotFound.
  Result run(const std::shared_ptr<Session>& session, SteadyTime deadline, std::stop_token cancel, Mode mode);

  // run() in steps, for a caller that must not block while it waits (an
  // asynchronous acquisition). start() is run() up to the wait: a result, or
  // nullopt when the entry waits. Then, whenever the waker set here is
  // called (a note, a change ahead, the session's loss, the manager's
  // close) and at the deadline or on cancellation, poll() goes on without
  // blocking. A start() after poll() threw is a retry, as a second run().
  std::optional<Result> start(const std::shared_ptr<Session>& session, SteadyTime deadline, Mode mode);
  struct Poll {
    enum class State {
      waiting,  // nothing to act on yet: wait for the waker
      grace,    // a blocker is gone: poll again in a moment (with grace_over), or at the waker
      decided,  // see result
    };
    State state = State::waiting;
    Result result = Result::not_acquired;
  };
  // `give_up_now`: cancelled, or the deadline passed; then the state is
  // decided (or grace), never waiting. Throws as run().
  Poll poll(const Session& session, SteadyTime deadline, bool give_up_now, bool grace_over);
  // Called (on whichever thread signals, never under a lock of the caller's)
  // when poll() may have something to act on. Empty: none.
  void set_waker(std::function<void()> waker);
  // How long poll() asks to wait when its state is grace.
  static constexpr std::chrono::milliseconds kNoteGrace{2};
  // How long a lock's waiter counts on its predecessor's note alone before
  // it watches the predecessor too (see above).
  static constexpr std::chrono::milliseconds kPredecessorWatchDelay{500};
  const Acquired& acquired() const { return acquired_; }

  // For an entry that the caller creates itself (a multi-lock's one Txn puts
  // an entry into several queues): expect_at() takes `key` on `session`'s
  // lease as the entry's key, before the create goes out (a hand-over note
  // may come as soon as the entry exists); adopt_created() says the create
  // happened, at `revision`; run() then waits. `newest`, when the create's
  // Txn read it (multi_enqueue_txn), is the queue's newest entries at
  // `revision`: run() waits for those ahead without reading the queue again
  // (a watch from that revision misses none of their deletes, however late
  // run() comes). Returns true when `newest` shows the entry admitted at
  // once. Whatever entry an earlier attempt left is the caller's to remove.
  void expect_at(const Session& session, std::string key);
  bool adopt_created(std::int64_t revision, bool in_doubt, const pb::RangeResponse* newest = nullptr);
  // A create of our key goes out now, sent by us (send_create) or by the
  // caller (a multi-lock's one Txn): a close() from here on reads, before
  // its revoke, whether it made an entry. The sender then checks closed()
  // (after a fence that pairs with the one in the closing callback): a close
  // that began earlier may have run that callback before this, and then the
  // create must not go out.
  void create_sending() ETCDLOCK_EXCLUDES(sent_key_mu_);

  // The entry this wait may have left in etcd when it did not acquire, to be
  // removed; nullopt when there is none.
  std::optional<Leftover> leftover() const;
  // The key of our entry, or of the one we are about to create.
  const std::string& key() const { return key_; }

 private:
  // What a read of the queue found: admitted (no blockers), or the entries
  // to watch; and the revision it read at.
  struct Read {
    std::vector<QueueEntry> blockers;
    std::int64_t revision = 0;
    // Every blocker leaves us a note when it releases (leaves_a_note);
    // known only when the read returned their values.
    bool blockers_leave_notes = false;
    // When its reply came: a deferred watch counts from it (a multi-lock's
    // later queue begins its wait with a read that may be seconds old).
    SteadyTime at{};
  };
  Read read_of(const Admission::Scan& scan, std::int64_t revision) const;
  // A lock's or multi-lock's waiter may defer its watch of a predecessor
  // that leaves a note (see above): its reads ahead return their values.
  bool may_defer_watch() const;

  void begin(const Session& session);
  // Sends a Txn that may create our entry; no reply puts the attempt in doubt.
  // `deadline` (the caller's) bounds its wait to be sent (etcd::NotSent,
  // not in doubt); once sent it has command_timeout to be answered.
  pb::TxnResponse send_create(const pb::TxnRequest& txn, SteadyTime deadline);
  // A create found our key taken: ours when this attempt created it (a
  // retry of a create whose reply was lost); otherwise a stray of ours or
  // someone else's key, which this attempt must not take for its own: then
  // the key is retired when it is on our lease, and the attempt takes a
  // fresh key. True when the entry is ours.
  bool adopt(const Session& session, const mvccpb::KeyValue& found, bool created_by_us);
  // A hand-over note said our entry was admitted: true when a read shows it
  // is still there (a note may come late, after the entry was deleted).
  bool confirm_own(SteadyTime deadline);
  // The Txns that create our entry; they set own_ and return what holds it
  // back (try_first: nullopt when someone else holds; enqueue: nullopt when
  // our entry is gone).
  std::optional<Read> try_first(const Session& session, SteadyTime deadline);
  std::optional<Read> enqueue(const Session& session, SteadyTime deadline);
  // Our entry and what holds it back, read in one revision, going on from a
  // first page that a create read; nullopt when our entry is gone.
  // Each page's entries ahead go through Entry::check_ahead.
  std::optional<Read> scan(Admission::Scan& scan, std::int64_t revision, SteadyTime deadline);
  std::optional<Read> read_ahead(SteadyTime deadline);
  // Entry::check_ahead on the values of the entries ahead in `read`.
  void check_entries_ahead(const pb::RangeResponse& read) const;
  // What holds our entry back, from `newest`, the read of the Txn that
  // created it at `revision` (ours, then those ahead), and, if that page does
  // not decide it, from further reads.
  std::optional<Read> read_from_create(const pb::RangeResponse& newest, std::int64_t revision, SteadyTime deadline);
  Result wait_until_first(const Session& session, SteadyTime deadline, std::stop_token cancel);
  // Our entry takes hand-over notes, and the manager has an inbox for them.
  bool notes_expected() const;
  // Acts on what the signals say, once ready (or on giving up): a result, or
  // nullopt to wait on (a new set of blockers is watched).
  std::optional<Result> react(const Session& session, SteadyTime deadline);
  // Watches `read`'s blockers, or defers that until kPredecessorWatchDelay
  // after the read, if that comes before `deadline`.
  void watch(const Read& read, SteadyTime deadline);
  void start_watches(const Read& read);
  // The deferral is over: watch what it held back.
  void start_deferred_watch();
  void cancel_deferral();
  void stop_watching();
  Result acquire();
  Result lose_entry();
  void set_own(std::optional<QueueEntry> own);
  // Registers our queue for close()'s note to its next entry (hand_over.h).
  void note_queue_on_close() noexcept;

  const std::shared_ptr<PrimitiveContext> context_;
  const QueueDir queue_;
  const Entry entry_;
  const std::shared_ptr<WaitSignals> signals_;
  std::string key_;                            // our entry's key on the current lease
  std::int64_t lease_id_ = 0;                  // that lease
  std::optional<QueueEntry> own_;              // our entry, once a Txn told us it exists
  std::atomic<std::int64_t> own_revision_{0};  // own_'s, for the closing thread
  std::optional<Successor> successor_;         // the entry behind own_ that confirm_own() found
  std::optional<Read> created_read_;           // what the caller's create read ahead of own_ (adopt_created)
  std::atomic<bool> create_sent_{false};       // a create of key_ went out: it may exist (read on close too)
  Mutex sent_key_mu_;                          // taken alone
  std::string sent_key_ ETCDLOCK_GUARDED_BY(sent_key_mu_);  // the key of the last create sent, for the closing thread
  bool in_doubt_ = false;                                   // a create of key_ went unanswered
  bool waited_ = false;
  std::vector<QueueEntry> watched_;    // the blockers we watch
  std::vector<std::int64_t> watches_;  // their watches
  std::optional<Read> deferred_;       // blockers to watch once deferred_task_ has run
  std::uint64_t deferred_task_ = 0;    // on the manager's worker; 0 when none
  bool awaiting_notes_ = false;        // the inbox reads at once for us (HandOverInbox::await_notes)
  Acquired acquired_;
  // Our entry, waiting or just admitted, may be the head when close()
  // revokes the lease: the queue's next entry gets a note then (hand_over.h).
  std::optional<std::stop_callback<std::function<void()>>> note_on_close_;
};

}  // namespace etcdlock::detail
