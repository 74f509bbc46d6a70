// HandOverInbox: the key where a manager receives hand-over notes (see
// queue/hand_over.h), watched for the manager's whole life so that the watch
// is in sync with etcd when a note arrives (etcd delays events to a watch
// created moments ago by up to 100 ms).
//
// The inbox key lies under the manager's prefix, so where prefixes nest (a
// manager on "P/jobs" beside a lock named "jobs" under "P") etcd's Go Mutex
// and `etcdctl lock P/jobs` count it as an entry of their queue, older than
// theirs once it has stood a while. So a note does not stay: once no waiter
// of this manager has expected one for a moment, the inbox deletes its key,
// and a few seconds after the note came whatever its waiters do (their own
// entries come and go, newer each time, but the key would keep its place).
//
// The watch is read only while a waiter awaits a note (await_notes()): an
// entry is created before it is known to wait, and most are admitted at
// once, so expecting a note costs nothing, and a lock cycle with nobody
// ahead leaves the watch hub's thread out of gRPC (etcd/watch_hub.h). A
// note may still come for an entry that never waited (close() notes the
// new head of each queue it leaves, whatever that head waited for), and
// must not stay: kNoteLinger after an entry is forgotten, the hub reads
// what has come (WatchHub::drain()), and a note found is deleted as usual.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/logger.h"
#include "base/mutex.h"
#include "base/worker.h"
#include "etcd/client.h"
#include "etcd/watch_hub.h"
#include "keys/queue_requests.h"

namespace etcdlock::detail {

// A note: the entry it is for, and how many hold at once in its queue.
struct Note {
  QueueEntry entry;
  std::int64_t limit = 1;
};
std::string encode_note(const Note& note);
std::optional<Note> decode_note(std::string_view text);
// Several notes in one value, for one inbox (a release that hands several
// queues to one manager writes its inbox once: etcd refuses a key twice in
// one Txn). They are joined by NUL, which no entry key contains.
std::string encode_notes(std::span<const Note> notes);
// The notes of a value; the parts that are no note are skipped.
std::vector<Note> decode_notes(std::string_view text);

// A wait that a note may end. Called on the watch hub's thread, under the
// inbox's mutex: implementations only record what they are told.
class HandOverReceiver {
 public:
  virtual ~HandOverReceiver() = default;
  // The entry created at `entry_revision` under the expected key is among
  // the first `limit` of its queue as of `revision`. The receiver checks
  // that it is its entry (a note may be for an earlier one under the same
  // key) and that `limit` is its own queue's.
  virtual void on_note(std::int64_t entry_revision, std::int64_t limit, std::int64_t revision) = 0;
  // Notes may have been missed: check the queue.
  virtual void on_notes_missed() = 0;
};

// One manager's inbox. Thread-safe.
class HandOverInbox {
 public:
  HandOverInbox(etcd::WatchHub& watches, const etcd::Client& client, Worker& worker, const Logger& log,
                std::string key);
  ~HandOverInbox();
  HandOverInbox(const HandOverInbox&) = delete;
  HandOverInbox& operator=(const HandOverInbox&) = delete;

  // Starts the inbox's watch and waits until it is in place. False when etcd
  // refused it or did not answer by `deadline`: then the manager advertises
  // no inbox, and its waiters rely on their predecessor watches alone.
  bool open(SteadyTime deadline);
  // The key to advertise in queue entries; empty when the inbox is not open.
  std::string address() const;

  // Tells `receiver` of notes for the entry `entry_key` until forget(). A
  // note that arrived before expect() is not replayed: expect before the
  // entry can be handed over, that is before the request that creates it.
  void expect(const std::string& entry_key, HandOverReceiver& receiver);
  // Only `receiver`'s: a later wait on the same key (the next acquisition of
  // the name on this lease) may have expected it meanwhile.
  void forget(const std::string& entry_key, const HandOverReceiver& receiver);

  // An entry of this manager is gone (a hold given up). While it stood, a
  // note could come for it after its wait's forget() and the drain that
  // followed: a release of another manager whose answer was lost notes the
  // entry behind its own once found gone, by which time that entry may hold
  // already. Such a note is read kNoteLinger from now, or later (if nothing
  // reads the watch before), and deleted as usual; no note can come once the
  // entry is gone, since a note's put compares the entry's create revision.
  // Out of memory, no drain is scheduled: the note stays until the next one.
  // Called also when the entry may still stand (its release went unanswered):
  // then its key is retired (queue/stray_entries.h), and the guard's watch,
  // read at once for the lease's life, reads a note that comes later.
  void entry_gone() noexcept;

  // A waiter expects a note now, or soon (its entry waits behind another):
  // the watch is read at once until kAwaitLinger after the last waiter's
  // matching stop_awaiting_notes(). The linger spares a manager that waits
  // again and again (contended) the cost of stopping the reader and calling
  // it back each time: a progress request and two wake-ups per acquisition.
  void await_notes();
  void stop_awaiting_notes();
  static constexpr std::chrono::milliseconds kAwaitLinger{250};

  // How long the inbox keeps a note once no waiter expects one.
  static constexpr std::chrono::milliseconds kNoteLinger{1000};
  // The longest a note stays while waiters come and go without a pause of
  // kNoteLinger (a manager that polls try_lock(), or always has a waiter):
  // then the key is deleted whether waiters expect notes or not, since under
  // a nested prefix etcd's Go Mutex and `etcdctl lock` wait for it as for a
  // holder. A note put before the delete still reaches its waiter (the watch
  // reports history), one put after it stays until the next delete. At most
  // one delete per kNoteMaxStay for a manager that is never idle.
  static constexpr std::chrono::milliseconds kNoteMaxStay{3 * kNoteLinger};

 private:
  class Listener;
  void on_notes(std::span<const etcd::WatchEvent> events);
  void on_missed();
  void on_opened(bool in_place);
  // Records that a note may be present, and schedules its delete.
  void note_arrived() ETCDLOCK_REQUIRES(mu_);
  // When a present note goes: kNoteLinger after the last waiter stopped
  // expecting one, or kNoteMaxStay after it came, whichever is sooner; while
  // waiters expect notes, only the latter.
  SteadyTime clear_due() const ETCDLOCK_REQUIRES(mu_);
  // Schedules clear_if_due() for clear_due(), unless one is due sooner.
  void schedule_clear() ETCDLOCK_REQUIRES(mu_);
  // Deletes the note if it is due; run at `scheduled_for`, and does nothing
  // when a sooner run has taken its place.
  void clear_if_due(SteadyTime scheduled_for);
  // Ends the hub's demand once no waiter has awaited a note for kAwaitLinger.
  // A worker task, so it ends no process when out of memory.
  void end_demand_if_idle() noexcept;
  // Reads the inbox kNoteLinger from now, unless a waiter has it read anyway.
  void schedule_drain() ETCDLOCK_REQUIRES(mu_);
  // Posts drain() for `due`.
  void post_drain(SteadyTime due) ETCDLOCK_REQUIRES(mu_);
  // Reads what came (WatchHub::drain()), then posts one more drain when a
  // request wants one later than this one's progress request left. So
  // drains come at most about two per kNoteLinger (when requests come a
  // little over half of it apart), and about one per kNoteLinger for a
  // manager that requests often. A worker task, as above.
  void drain() noexcept;

  etcd::WatchHub& watches_;
  const etcd::Client& client_;
  Worker& worker_;
  const Logger& log_;
  const std::string key_;

  mutable Mutex mu_;
  std::condition_variable_any opened_;
  std::optional<bool> open_ ETCDLOCK_GUARDED_BY(mu_);  // set once etcd answered
  std::int64_t watch_ ETCDLOCK_GUARDED_BY(mu_) = 0;
  std::map<std::string, HandOverReceiver*> expected_ ETCDLOCK_GUARDED_BY(mu_);  // by entry key
  bool note_present_ ETCDLOCK_GUARDED_BY(mu_) = false;  // a note was put since the key was last deleted
  SteadyTime note_since_ ETCDLOCK_GUARDED_BY(mu_);      // when note_present_ was last set
  // When the pending clear_if_due() runs; max() when none is pending.
  SteadyTime clear_at_ ETCDLOCK_GUARDED_BY(mu_) = SteadyTime::max();
  SteadyTime last_expected_ ETCDLOCK_GUARDED_BY(mu_);  // when a waiter last stopped expecting
  std::size_t awaiting_ ETCDLOCK_GUARDED_BY(mu_) = 0;  // waiters between await_notes() and stop_awaiting_notes()
  bool demand_held_ ETCDLOCK_GUARDED_BY(mu_) = false;  // the hub's, for them
  bool demand_end_scheduled_ ETCDLOCK_GUARDED_BY(mu_) = false;
  bool drain_scheduled_ ETCDLOCK_GUARDED_BY(mu_) = false;
  // The latest instant a drain was asked for: a request's time + kNoteLinger.
  SteadyTime drain_wanted_by_ ETCDLOCK_GUARDED_BY(mu_);
  SteadyTime last_awaited_ ETCDLOCK_GUARDED_BY(mu_);  // when the last waiter stopped awaiting
};

}  // namespace etcdlock::detail
