#include "queue/queue_wait.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "base/text.h"
#include "etcd/lost_replies.h"
#include "keys/key_layout.h"
#include "queue/hand_over.h"
#include "queue/wait_signals.h"

namespace etcdlock::detail {
namespace {

// The wait is over: something to act on.
bool ready(const WaitSignals& signals, const Session& session, const PrimitiveContext& context)
    ETCDLOCK_REQUIRES(signals.mu) {
  return signals.handed_over_at || signals.check_queue || signals.watch_due || !signals.refused.empty() ||
         !session.alive() || context.closed();
}

// A blocker is gone, and if it handed over, its note comes in the same
// revision, right behind on the same stream: worth a moment's wait
// (QueueWait::kNoteGrace), since it spares a read.
bool worth_a_grace(const WaitSignals& signals, bool notes_expected) ETCDLOCK_REQUIRES(signals.mu) {
  return signals.check_queue && !signals.handed_over_at && notes_expected;
}

}  // namespace

QueueWait::QueueWait(std::shared_ptr<PrimitiveContext> context, QueueDir queue, Entry entry)
    : context_(std::move(context)),
      queue_(std::move(queue)),
      entry_(std::move(entry)),
      signals_(std::make_shared<WaitSignals>(entry_.admission.limit())) {
  // Registered for the wait's whole life, not its waits alone: the closing
  // thread runs it before the revoke, whatever this wait's thread is doing
  // (a note being confirmed, a hold being set up).
  if (entry_.takes_notes) note_on_close_.emplace(context_->closed_token(), [this] { note_queue_on_close(); });
}

void QueueWait::note_queue_on_close() noexcept {
  // Pairs with the fence in create_sending()'s callers: either this sees
  // the create marked sent, or the sender sees the manager closed.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  try {
    if (const auto revision = own_revision_.load(); revision != 0) {
      context_->hand_over_queue_on_close(queue_.dir, revision);
    } else if (create_sent_.load()) {
      // A create sent and not yet answered may have made an entry, even
      // the first with others behind it: close() reads it before the
      // revoke.
      std::string key;
      {
        MutexLock lock(sent_key_mu_);
        key = sent_key_;
      }
      if (!key.empty()) context_->hand_over_queue_on_close_unanswered(queue_.dir, std::move(key));
    }
  } catch (...) {
    // Out of memory: the entry behind ours gets no note and waits for its
    // deferred watch. Runs in request_stop() and a destructor: never throws.
  }
}

void QueueWait::set_own(std::optional<QueueEntry> own) {
  own_revision_.store(own ? own->revision : 0);
  own_ = std::move(own);
}

QueueWait::~QueueWait() {
  // close() requests its stop, then runs the callbacks one by one, the
  // newest first: this wait's wake-up (wait_until_first's) runs before the
  // callback above, and this thread, woken by it, may see the manager
  // closed and end the wait before the closing thread gets to that
  // callback. A stop_callback destroyed before its turn never runs, and
  // our queue would go unnoted: the entry behind ours, the head once the
  // lease is revoked, waited for its deferred watch (about 500 ms; 4 of 780
  // trials of ReviewClose.CloseRacingCompletingAcquisitionLeavesNoWaiterBehind
  // under ThreadSanitizer). So the queue is registered here too, before the
  // callback is destroyed, that is before close() collects the queues
  // (twice is harmless; once collected, a late one is dropped).
  if (note_on_close_ && context_->closed()) note_queue_on_close();
  stop_watching();
  if (!key_.empty()) context_->inbox().forget(key_, *signals_);
}

void QueueWait::begin(const Session& session) {
  stop_watching();
  if (!key_.empty()) {
    context_->inbox().forget(key_, *signals_);
    // The lease of the last key was lost here, but may live on in etcd for a
    // while, and a create of it in doubt may still land: nothing claims it.
    if (own_ || create_sent_ || in_doubt_) context_->strays().retire(key_, lease_id_);
  }
  lease_id_ = session.lease_id();
  key_ = queue_key(queue_.dir, session.lease_id()) + entry_.key_suffix;
  // A key retired on this lease may still get an entry that a late create
  // makes, which is then removed: ours must be another.
  if (context_->strays().retired(key_)) key_ += context_->unique_key_suffix();
  set_own(std::nullopt);
  created_read_.reset();
  create_sent_ = false;
  in_doubt_ = false;
  signals_->reset();
  // Before the entry exists: a note may come as soon as it does.
  if (entry_.takes_notes) context_->inbox().expect(key_, *signals_);
}

void QueueWait::expect_at(const Session& session, std::string key) {
  stop_watching();
  if (!key_.empty()) context_->inbox().forget(key_, *signals_);
  lease_id_ = session.lease_id();
  key_ = std::move(key);
  set_own(std::nullopt);
  created_read_.reset();
  create_sent_ = false;
  in_doubt_ = false;
  waited_ = false;
  signals_->reset();
  if (entry_.takes_notes) context_->inbox().expect(key_, *signals_);
}

bool QueueWait::adopt_created(std::int64_t revision, bool in_doubt, const pb::RangeResponse* newest) {
  set_own(QueueEntry{key_, revision});
  create_sent_ = true;
  in_doubt_ = in_doubt;
  signals_->set_own(revision);
  created_read_.reset();
  if (!newest) return false;
  Admission::Scan ahead_scan(entry_.admission);
  ahead_scan.take(*newest, revision);
  if (!ahead_scan.decided()) return false;  // a longer page: run() reads on
  if (ahead_scan.blockers().empty()) return true;
  created_read_ = read_of(ahead_scan, revision);
  return false;
}

std::optional<Leftover> QueueWait::leftover() const {
  if (own_) return Leftover{*own_, in_doubt_};
  if (create_sent_ || in_doubt_) return Leftover{QueueEntry{key_, 0}, true};
  return std::nullopt;
}

QueueWait::Result QueueWait::run(const std::shared_ptr<Session>& session, SteadyTime deadline, std::stop_token cancel,
                                 Mode mode) {
  if (const auto decided = start(session, deadline, mode)) return *decided;
  return wait_until_first(*session, deadline, std::move(cancel));
}

std::optional<QueueWait::Result> QueueWait::start(const std::shared_ptr<Session>& session, SteadyTime deadline,
                                                  Mode mode) {
  // A key of another session's lease is begun anew. Lease ids print in hex
  // of any width (etcd's and Go's layout), so the key's text cannot tell:
  // "dir/1234" starts with the key of lease 0x123 too.
  if (key_.empty() || lease_id_ != session->lease_id()) begin(*session);
  std::optional<Read> read;
  if (own_ && created_read_) {
    read = std::exchange(created_read_, std::nullopt);  // the caller's create read it
  } else if (own_) {
    read = read_ahead(deadline);  // a retry: where is our entry now?
  } else if (mode == Mode::try_once && entry_.admission.rule() == Admission::Rule::exclusive) {
    read = try_first(*session, deadline);
    if (!read) return Result::not_acquired;
  } else {
    read = enqueue(*session, deadline);
  }
  if (!read) return lose_entry();
  if (read->blockers.empty()) return acquire();
  waited_ = true;
  if (mode == Mode::try_once) return Result::not_acquired;
  watch(*read, deadline);
  return std::nullopt;
}

void QueueWait::create_sending() {
  {
    MutexLock lock(sent_key_mu_);
    sent_key_ = key_;
  }
  create_sent_ = true;
}

pb::TxnResponse QueueWait::send_create(const pb::TxnRequest& txn, SteadyTime deadline) {
  const bool sent_before = create_sent_;
  create_sending();
  std::atomic_thread_fence(std::memory_order_seq_cst);  // see create_sending()
  if (context_->closed()) throw context_->closed_error();
  // The caller's deadline bounds the create's wait to be sent, not its
  // answer, which has command_timeout from the moment it leaves. Sent with
  // that deadline, a try whose timeout was shorter than etcd's answer left
  // its create in doubt, and each such key was retired with a watch kept for
  // the lease's life: a loop of 1 ms tries grew them without end
  // (ShortTries.OfALockLeaveNoCreateInDoubt). One not sent by
  // then never left, and is not in doubt.
  const auto& client = context_->client();
  try {
    return client.queue_write(txn, etcd::write_site::enqueue, deadline);
  } catch (const etcd::NotSent&) {
    create_sent_ = sent_before;
    throw;
  } catch (const Error& error) {
    // No reply: etcd may apply it now, or much later. Whatever the attempt
    // ends in, the key is retired then (stray_entries.h).
    if (error.value() == errc::unavailable) in_doubt_ = true;
    throw;
  }
}

bool QueueWait::adopt(const Session& session, const mvccpb::KeyValue& found, bool created_by_us) {
  if (created_by_us && found.lease() == session.lease_id()) {
    // Ours already: a create whose reply was lost was applied.
    set_own(QueueEntry{key_, found.create_revision()});
    signals_->set_own(own_->revision);
    return true;
  }
  // Not this attempt's: a create of an earlier one that landed late, or a
  // key someone else made under our name. Taking it would give two holds
  // one entry.
  context_->log()(LogLevel::warning, "a queue key this attempt did not create was found under its name; taking another",
                  {{"key", key_}});
  // A stray of ours goes; so does a create of ours that is in doubt, which
  // could land once someone else's key is gone.
  if (found.lease() == session.lease_id() || in_doubt_) context_->strays().retire(key_, session.lease_id());
  if (entry_.takes_notes) context_->inbox().forget(key_, *signals_);
  key_ = queue_key(queue_.dir, session.lease_id()) + entry_.key_suffix + context_->unique_key_suffix();
  if (entry_.takes_notes) context_->inbox().expect(key_, *signals_);
  create_sent_ = false;
  in_doubt_ = false;
  return false;
}

std::optional<QueueWait::Read> QueueWait::try_first(const Session& session, SteadyTime deadline) {
  // One round trip either way: create our entry only in an empty queue.
  for (;;) {
    const bool created_by_us = create_sent_ || in_doubt_;
    const auto response = send_create(enqueue_if_empty_txn(queue_, key_, entry_.value, session.lease_id()), deadline);
    const std::int64_t revision = response.header().revision();
    if (response.succeeded()) {
      set_own(QueueEntry{key_, revision});
      signals_->set_own(revision);
      return Read{{}, revision};
    }
    const auto& own = response.responses(0).response_range();
    const auto& head = response.responses(1).response_range();
    if (own.kvs_size() > 0) {
      if (!adopt(session, own.kvs(0), created_by_us)) continue;
      if (head.kvs_size() > 0 && head.kvs(0).key() == key_) return Read{{}, revision};
      return read_ahead(deadline);
    }
    // The first key is the inbox of a manager on a nested prefix, which holds
    // nobody back (see keys/key_layout.h): queue, then see who is ahead.
    if (head.kvs_size() > 0 && is_inbox_key(head.kvs(0).key())) return enqueue(session, deadline);
    // Some key is first: any key under the directory, also one of a longer
    // name ("a/b" under "a"), is ahead of us (see keys/key_layout.h).
    if (!in_doubt_) create_sent_ = false;  // this failure branch created nothing
    return std::nullopt;
  }
}

std::optional<QueueWait::Read> QueueWait::enqueue(const Session& session, SteadyTime deadline) {
  const auto& admission = entry_.admission;
  for (;;) {
    const bool created_by_us = create_sent_ || in_doubt_;
    const AheadRead ahead{admission.first_read_limit(), admission.reads_values() || may_defer_watch()};
    const auto response = send_create(enqueue_txn(queue_, key_, entry_.value, session.lease_id(), ahead), deadline);
    if (!response.succeeded()) {
      const auto& own = response.responses(0).response_range();
      if (own.kvs_size() == 0) return std::nullopt;  // gone between the compare and the read: impossible in one Txn
      if (!adopt(session, own.kvs(0), created_by_us)) continue;
      return read_ahead(deadline);
    }
    const std::int64_t revision = response.header().revision();
    set_own(QueueEntry{key_, revision});
    signals_->set_own(revision);
    return read_from_create(response.responses(1).response_range(), revision, deadline);
  }
}

void QueueWait::check_entries_ahead(const pb::RangeResponse& read) const {
  if (!entry_.check_ahead) return;
  std::vector<std::string> values;
  for (const auto& kv : read.kvs()) {
    if (kv.key() != key_ && is_own_entry(queue_.dir, kv.key())) values.push_back(kv.value());
  }
  entry_.check_ahead(values);
}

std::optional<QueueWait::Read> QueueWait::read_from_create(const pb::RangeResponse& newest, std::int64_t revision,
                                                           SteadyTime deadline) {
  check_entries_ahead(newest);
  // Newest first: ours, then those ahead.
  Admission::Scan ahead_scan(entry_.admission);
  ahead_scan.take(newest, revision);
  if (ahead_scan.decided()) return read_of(ahead_scan, revision);
  return scan(ahead_scan, ahead_scan.next_below(), deadline);
}

QueueWait::Read QueueWait::read_of(const Admission::Scan& scan, std::int64_t revision) const {
  Read read{scan.blockers(), revision};
  read.at = SteadyClock::now();
  const auto& values = scan.blocker_values();
  read.blockers_leave_notes = !read.blockers.empty() && values.size() == read.blockers.size();
  for (std::size_t i = 0; read.blockers_leave_notes && i < values.size(); ++i) {
    read.blockers_leave_notes = leaves_a_note(queue_, read.blockers[i].key, values[i]);
  }
  return read;
}

bool QueueWait::may_defer_watch() const {
  return entry_.admission.rule() == Admission::Rule::exclusive && notes_expected();
}

std::optional<QueueWait::Read> QueueWait::read_ahead(SteadyTime deadline) {
  Admission::Scan fresh(entry_.admission);
  return scan(fresh, own_->revision, deadline);
}

std::optional<QueueWait::Read> QueueWait::scan(Admission::Scan& ahead_scan, std::int64_t below, SteadyTime deadline) {
  // Our entry, and the pages ahead of it, each read with our entry in one
  // revision: whatever the scan decides, our entry was there.
  AheadRead page{entry_.admission.first_read_limit(), entry_.admission.reads_values() || may_defer_watch()};
  for (;;) {
    const auto response = context_->client().txn(ahead_read(queue_, *own_, below, page), deadline);
    const auto& own = response.responses(0).response_range();
    if (own.kvs_size() == 0 || own.kvs(0).create_revision() != own_->revision) return std::nullopt;
    // Every page that decides our admission is checked (a semaphore's other
    // limit refused), not only the create's own read: when its reply was
    // lost, the retry that adopts the entry reads it here (helper-57's
    // review: a limit-2 acquirer was admitted beside a limit-1 holder), and
    // a first page of nested managers' inboxes, which hold nobody back, must
    // not hide a holder on the next (helper-58's).
    check_entries_ahead(response.responses(1).response_range());
    ahead_scan.take(response.responses(1).response_range(), below);
    if (ahead_scan.decided()) return read_of(ahead_scan, response.header().revision());
    below = ahead_scan.next_below();
    page.limit = kQueuePage;
  }
}

QueueWait::Result QueueWait::wait_until_first(const Session& session, SteadyTime deadline, std::stop_token cancel) {
  const auto wake = [signals = signals_] { signals->wake(); };
  std::stop_callback on_session_lost(session.lost_token(), wake);
  std::stop_callback on_closed(context_->closed_token(), wake);
  const bool notes = notes_expected();  // before signals_->mu: the inbox's mutex comes first
  for (;;) {
    {
      MutexLock lock(signals_->mu);
      const auto is_ready = [&]() ETCDLOCK_REQUIRES(signals_->mu) { return ready(*signals_, session, *context_); };
      if (deadline == SteadyTime::max()) {
        signals_->changed.wait(lock, cancel, is_ready);
      } else {
        signals_->changed.wait_until(lock, cancel, deadline, is_ready);
      }
      if (worth_a_grace(*signals_, notes)) {
        signals_->changed.wait_for(
            lock, kNoteGrace, [&]() ETCDLOCK_REQUIRES(signals_->mu) { return signals_->handed_over_at.has_value(); });
      }
    }
    if (const auto decided = react(session, deadline)) return *decided;
  }
}

bool QueueWait::notes_expected() const { return entry_.takes_notes && !context_->inbox().address().empty(); }

QueueWait::Poll QueueWait::poll(const Session& session, SteadyTime deadline, bool give_up_now, bool grace_over) {
  const bool notes = notes_expected();  // before signals_->mu: the inbox's mutex comes first
  {
    MutexLock lock(signals_->mu);
    if (!ready(*signals_, session, *context_)) {
      if (!give_up_now) return {Poll::State::waiting};
    } else if (!grace_over && worth_a_grace(*signals_, notes)) {
      return {Poll::State::grace};
    }
  }
  if (const auto decided = react(session, deadline)) return {Poll::State::decided, *decided};
  // A signal came (a watch in place, a blocker gone) and a read found our
  // entry still behind others. The caller giving up must give up now: the
  // cancel or deadline that told it to may have come in the same wake-up as
  // that signal, and nothing else will wake it (a blocking wait loops and
  // sees its cancel again; a poll has no loop).
  if (give_up_now) return {Poll::State::decided, Result::not_acquired};
  return {Poll::State::waiting};
}

void QueueWait::set_waker(std::function<void()> waker) {
  MutexLock lock(signals_->mu);
  signals_->waker = std::move(waker);
}

std::optional<QueueWait::Result> QueueWait::react(const Session& session, SteadyTime deadline) {
  std::optional<std::int64_t> handed_over_at;
  std::string refused;
  bool check_queue = false;
  bool watch_due = false;
  {
    MutexLock lock(signals_->mu);
    handed_over_at = signals_->handed_over_at;
    refused = signals_->refused;
    check_queue = std::exchange(signals_->check_queue, false);
    watch_due = std::exchange(signals_->watch_due, false);
  }
  if (handed_over_at) return entry_.caller_confirms_notes || confirm_own(deadline) ? acquire() : lose_entry();
  if (context_->closed()) throw context_->closed_error();
  if (!session.alive()) {
    // Lost here, the lease may live on in etcd a while, and our entry in
    // the queue with it: nothing claims it any more.
    if (own_ || create_sent_) context_->strays().retire(key_, lease_id_);
    return lose_entry();
  }
  if (!refused.empty()) {
    throw Error(errc::permission_denied,
                "etcd refused to watch the queue of " + quote_value(queue_.dir) + " ahead of our entry: " + refused);
  }
  // No note came in time: watch the predecessor too, before any read below
  // defers a watch anew. (A due from a deferral ended since starts nothing.)
  if (watch_due) start_deferred_watch();
  if (!check_queue) {
    if (watch_due) return std::nullopt;
    return Result::not_acquired;  // cancelled, or the deadline passed
  }
  const auto fresh = read_ahead(deadline);
  if (!fresh) return lose_entry();
  if (fresh->blockers.empty()) return acquire();
  watch(*fresh, deadline);
  return std::nullopt;
}

bool QueueWait::confirm_own(SteadyTime deadline) {
  // The note says our entry was first at its revision; it may have been
  // delivered late (our connection stalled), after an admin deleted the
  // entry or its lease was revoked and the next waiter was let in. A read
  // now is newer than anything the note knew.
  auto& client = context_->client();
  if (entry_.admission.rule() == Admission::Rule::exclusive) {
    // The same read also finds the entry right behind ours: one holder at a
    // time, so its release can hand over to it without reading the queue.
    const auto read = client.range(own_and_next_read(queue_, *own_), client.request_deadline(deadline));
    const auto found = own_and_next(queue_, *own_, read);
    if (found.own_stands) {
      if (*found.own_stands) successor_ = found.next;
      return *found.own_stands;
    }
  }
  pb::RangeRequest read;
  read.set_key(own_->key);
  read.set_keys_only(true);
  const auto found = client.range(read, client.request_deadline(deadline));
  return found.kvs_size() > 0 && found.kvs(0).create_revision() == own_->revision;
}

void QueueWait::watch(const Read& read, SteadyTime deadline) {
  // Our entry waits: a note may come any time now, and must be read at once.
  if (notes_expected() && !awaiting_notes_) {
    context_->inbox().await_notes();
    awaiting_notes_ = true;
  }
  const bool watched_already = std::any_of(read.blockers.begin(), read.blockers.end(), [&](const QueueEntry& blocker) {
    return std::any_of(watched_.begin(), watched_.end(),
                       [&](const QueueEntry& entry) { return entry.key == blocker.key; });
  });
  // Not past the wait's deadline: a wait that ends before its watch starts
  // would time out behind a holder gone early in it without a note.
  const SteadyTime due = read.at + kPredecessorWatchDelay;
  const bool worth_deferring = due > SteadyClock::now() && due < deadline;
  if (may_defer_watch() && read.blockers_leave_notes && !watched_already && (worth_deferring || deferred_task_ != 0)) {
    // Watches of entries that hold us back no more end; a deferral under
    // way keeps its time and takes the newer read, which saw them all there.
    start_watches(Read{{}, read.revision});
    deferred_ = read;
    if (deferred_task_ == 0) {
      deferred_task_ = context_->worker().post_at(due, [signals = std::weak_ptr<WaitSignals>(signals_)] {
        if (const auto waiting = signals.lock()) waiting->deferred_watch_due();
      });
    }
    return;
  }
  cancel_deferral();
  start_watches(read);
}

void QueueWait::cancel_deferral() {
  if (deferred_task_ != 0) context_->worker().cancel(std::exchange(deferred_task_, 0));
  deferred_.reset();
}

void QueueWait::start_deferred_watch() {
  deferred_task_ = 0;
  if (const auto read = std::exchange(deferred_, std::nullopt)) start_watches(*read);
}

void QueueWait::start_watches(const Read& read) {
  // Keep the watches of blockers that are still blockers: they have seen
  // everything since they started.
  std::vector<QueueEntry> kept;
  std::vector<std::int64_t> kept_watches;
  for (std::size_t i = 0; i < watched_.size(); ++i) {
    const bool still = std::any_of(read.blockers.begin(), read.blockers.end(), [&](const QueueEntry& blocker) {
      return blocker.key == watched_[i].key && blocker.revision == watched_[i].revision;
    });
    if (still) {
      kept.push_back(watched_[i]);
      kept_watches.push_back(watches_[i]);
    } else {
      context_->watches().remove(watches_[i]);
    }
  }
  watched_ = std::move(kept);
  watches_ = std::move(kept_watches);
  const auto events =
      entry_.admission.watches_changes() ? etcd::WatchHub::Events::all : etcd::WatchHub::Events::deletes_only;
  // Entries that take notes get them on the fast path; their watches start
  // after the read, so none misses a change, even if etcd delivers it up to
  // 100 ms late (it catches up a watch that starts in the past in a loop).
  // Entries without notes (readers, election candidates) would wait that
  // long: their watches start from now, in sync, and a read once they are in
  // place covers what came before.
  const bool from_now = !entry_.takes_notes;
  for (const auto& blocker : read.blockers) {
    const bool watched = std::any_of(watched_.begin(), watched_.end(),
                                     [&](const QueueEntry& entry) { return entry.key == blocker.key; });
    if (watched) continue;
    watches_.push_back(context_->watches().add(blocker.key, "", from_now ? 0 : read.revision + 1,
                                               std::make_shared<BlockerWatch>(signals_, from_now), events));
    watched_.push_back(blocker);
  }
}

void QueueWait::stop_watching() {
  if (std::exchange(awaiting_notes_, false)) context_->inbox().stop_awaiting_notes();
  cancel_deferral();
  for (const auto watch : watches_) context_->watches().remove(watch);
  watches_.clear();
  watched_.clear();
}

QueueWait::Result QueueWait::lose_entry() {
  // A create in doubt stays so: it could still land on this key.
  stop_watching();
  set_own(std::nullopt);
  create_sent_ = false;
  signals_->reset();
  return Result::entry_lost;
}

QueueWait::Result QueueWait::acquire() {
  stop_watching();
  acquired_ = Acquired{*own_, waited_, in_doubt_, std::exchange(successor_, std::nullopt)};
  return Result::acquired;
}

}  // namespace etcdlock::detail
