#include "queue_wait.h"

#include <condition_variable>
#include <utility>
#include <vector>

#include "key_layout.h"
#include "text.h"
#include "mutex.h"

namespace etcdlock::detail {
namespace {

// How long a waiter whose predecessor is gone waits for a hand-over note
// before it reads the queue instead.
constexpr std::chrono::milliseconds kNoteGrace{2};

// The first entry of `queue` in `page` that was created before `below` (0:
// any), and the create revision to read below for the next page, if any.
std::optional<QueueEntry> first_entry(const QueueDir& queue, const pb::RangeResponse& page, std::int64_t below,
                                      std::int64_t& next_below) {
  next_below = 0;
  for (const auto& kv : page.kvs()) {
    if (below != 0 && kv.create_revision() >= below) continue;
    if (is_queue_entry(queue.dir, kv.key())) return QueueEntry{kv.key(), kv.create_revision()};
  }
  if (page.more() && page.kvs_size() > 0) next_below = page.kvs(page.kvs_size() - 1).create_revision();
  return std::nullopt;
}

}  // namespace

// What the waiting thread waits for, set from the watch hub's thread (notes,
// the predecessor's deletion), the session's thread and the closing thread.
struct QueueWait::Signals final : HandOverReceiver {
  Mutex mu;
  std::condition_variable_any changed;
  std::int64_t own_revision ETCDLOCK_GUARDED_BY(mu) = 0;  // 0 until known
  std::vector<std::pair<std::int64_t, std::int64_t>> early ETCDLOCK_GUARDED_BY(mu);  // notes before own_revision was known
  std::optional<std::int64_t> handed_over_at ETCDLOCK_GUARDED_BY(mu);
  bool check_queue ETCDLOCK_GUARDED_BY(mu) = false;
  std::string refused ETCDLOCK_GUARDED_BY(mu);  // why etcd refused a watch

  void on_note(std::int64_t entry_revision, std::int64_t revision) override {
    {
      MutexLock lock(mu);
      if (own_revision == 0) {
        early.emplace_back(entry_revision, revision);
      } else if (entry_revision == own_revision) {
        handed_over_at = revision;
      }
    }
    changed.notify_all();
  }
  void on_notes_missed() override { ask_check(); }

  void ask_check() {
    {
      MutexLock lock(mu);
      check_queue = true;
    }
    changed.notify_all();
  }
  void refuse(const std::string& reason) {
    {
      MutexLock lock(mu);
      refused = reason.empty() ? "permission denied" : reason;
    }
    changed.notify_all();
  }
  void wake() {
    { MutexLock lock(mu); }
    changed.notify_all();
  }
  void set_own(std::int64_t revision) {
    MutexLock lock(mu);
    own_revision = revision;
    for (const auto& [entry_revision, at] : early) {
      if (entry_revision == revision) handed_over_at = at;
    }
    early.clear();
  }
  void reset() {
    MutexLock lock(mu);
    own_revision = 0;
    early.clear();
    handed_over_at.reset();
    check_queue = false;
    refused.clear();
  }
};

// The watch on our predecessor's key. The hub may call it after it is
// removed, so it shares the signals rather than pointing at the wait.
class QueueWait::PredecessorWatch final : public etcd::WatchListener {
 public:
  explicit PredecessorWatch(std::shared_ptr<Signals> signals) : signals_(std::move(signals)) {}
  void on_events(std::span<const etcd::WatchEvent> events) override {
    for (const auto& event : events) {
      if (event.deleted) signals_->ask_check();
    }
  }
  void on_gap() override { signals_->ask_check(); }
  void on_failed(const std::string& reason) override { signals_->refuse(reason); }

 private:
  std::shared_ptr<Signals> signals_;
};

QueueWait::QueueWait(std::shared_ptr<LockContext> context, QueueDir queue, Fence& fence, std::string value)
    : context_(std::move(context)),
      queue_(std::move(queue)),
      fence_(fence),
      value_(std::move(value)),
      signals_(std::make_shared<Signals>()) {}

QueueWait::~QueueWait() {
  stop_watching();
  if (!key_.empty()) context_->inbox().forget(key_);
}

void QueueWait::begin(const Session& session) {
  stop_watching();
  if (!key_.empty()) context_->inbox().forget(key_);
  key_ = queue_key(queue_.dir, session.lease_id());
  own_.reset();
  create_sent_ = false;
  in_doubt_ = false;
  signals_->reset();
  // Before the entry exists: a note may come as soon as it does.
  context_->inbox().expect(key_, *signals_);
}

std::optional<QueueWait::Leftover> QueueWait::leftover() const {
  if (own_) return Leftover{*own_, in_doubt_};
  if (create_sent_ || in_doubt_) return Leftover{QueueEntry{key_, 0}, true};
  return std::nullopt;
}

QueueWait::Result QueueWait::run(const std::shared_ptr<Session>& session, SteadyTime deadline, std::stop_token cancel,
                                 Mode mode) {
  if (key_ != queue_key(queue_.dir, session->lease_id())) begin(*session);
  std::optional<Read> read;
  if (own_) {
    read = read_predecessor(deadline);  // a retry: where is our entry now?
  } else if (mode == Mode::try_once) {
    read = try_first(*session, deadline);
    if (!read) return Result::not_acquired;
  } else {
    read = enqueue(*session, deadline);
  }
  if (!read) return lose_entry();
  if (!read->predecessor) return acquire();
  waited_ = true;
  if (mode == Mode::try_once) return Result::not_acquired;
  return wait_for_turn(*session, *read, deadline, std::move(cancel));
}

pb::TxnResponse QueueWait::send_create(const pb::TxnRequest& txn, SteadyTime deadline) {
  create_sent_ = true;
  try {
    return context_->client().txn(txn, deadline);
  } catch (const Error& error) {
    // No reply: etcd may apply it now, or much later. The attempt must end
    // by closing the fence.
    if (error.value() == errc::unavailable) in_doubt_ = true;
    throw;
  }
}

bool QueueWait::fence_moved(const Session& session, const pb::TxnResponse& response, std::int64_t sent_version) {
  const auto& fence = response.responses(response.responses_size() - 1).response_range();
  fence_.saw(session.lease_id(), fence);
  return fence_.version(session.lease_id()) != sent_version;
}

std::optional<QueueWait::Read> QueueWait::try_first(const Session& session, SteadyTime deadline) {
  // One round trip either way: create our entry only in an empty queue.
  for (;;) {
    const FenceCheck fence{fence_.key(session.lease_id()), fence_.version(session.lease_id())};
    const auto response =
        send_create(enqueue_if_empty_txn(queue_, key_, value_, session.lease_id(), fence), deadline);
    const std::int64_t revision = response.header().revision();
    if (response.succeeded()) {
      own_ = QueueEntry{key_, revision};
      signals_->set_own(revision);
      return Read{std::nullopt, revision};
    }
    const auto& own = response.responses(0).response_range();
    std::int64_t more = 0;
    const auto first = first_entry(queue_, response.responses(1).response_range(), 0, more);
    if (own.kvs_size() > 0) {
      // An earlier try of ours was applied though its reply was lost.
      own_ = QueueEntry{key_, own.kvs(0).create_revision()};
      signals_->set_own(own_->revision);
      fence_moved(session, response, fence.version);
      if (first) return Read{first->key == key_ ? std::nullopt : first, revision};
      return read_predecessor(deadline);
    }
    if (fence_moved(session, response, fence.version)) continue;  // with the fence as it is now
    if (first) {
      if (!in_doubt_) create_sent_ = false;  // this failure branch created nothing
      return std::nullopt;
    }
    // The queue's first key is one of a longer name ("a/b" under "a"): queue,
    // then see who is ahead.
    return enqueue(session, deadline);
  }
}

std::optional<QueueWait::Read> QueueWait::enqueue(const Session& session, SteadyTime deadline) {
  for (;;) {
    const FenceCheck fence{fence_.key(session.lease_id()), fence_.version(session.lease_id())};
    const auto response = send_create(enqueue_txn(queue_, key_, value_, session.lease_id(), fence), deadline);
    if (!response.succeeded()) {
      const auto& own = response.responses(0).response_range();
      if (own.kvs_size() == 0) {
        if (fence_moved(session, response, fence.version)) continue;  // with the fence as it is now
        return std::nullopt;
      }
      // Ours already: a retry of a request that was applied.
      own_ = QueueEntry{key_, own.kvs(0).create_revision()};
      signals_->set_own(own_->revision);
      return read_predecessor(deadline);
    }
    const std::int64_t revision = response.header().revision();
    own_ = QueueEntry{key_, revision};
    signals_->set_own(revision);
    // Newest first: ours, then our predecessor, unless keys of longer names
    // come between.
    std::int64_t more = 0;
    const auto predecessor = first_entry(queue_, response.responses(1).response_range(), revision, more);
    if (predecessor || more == 0) return Read{predecessor, revision};
    return read_predecessor(deadline);
  }
}

std::optional<QueueWait::Read> QueueWait::read_predecessor(SteadyTime deadline) {
  std::int64_t below = own_->revision;
  for (std::int64_t limit = 1;; limit = kQueuePage) {
    const auto response = context_->client().txn(predecessor_read(queue_, *own_, below, limit), deadline);
    const auto& own = response.responses(0).response_range();
    if (own.kvs_size() == 0 || own.kvs(0).create_revision() != own_->revision) return std::nullopt;
    std::int64_t more = 0;
    const auto predecessor = first_entry(queue_, response.responses(1).response_range(), below, more);
    if (predecessor || more == 0) return Read{predecessor, response.header().revision()};
    below = more;  // only keys of longer names so far: read on below them
  }
}

QueueWait::Result QueueWait::wait_for_turn(const Session& session, Read read, SteadyTime deadline,
                                           std::stop_token cancel) {
  watch_predecessor(read);
  const bool notes_expected = !context_->inbox().address().empty();
  const auto wake = [signals = signals_] { signals->wake(); };
  std::stop_callback on_session_lost(session.lost_token(), wake);
  std::stop_callback on_closed(context_->closed_token(), wake);
  for (;;) {
    std::optional<std::int64_t> handed_over_at;
    std::string refused;
    bool check_queue = false;
    {
      MutexLock lock(signals_->mu);
      const auto ready = [&]() ETCDLOCK_REQUIRES(signals_->mu) {
        return signals_->handed_over_at || signals_->check_queue || !signals_->refused.empty() ||
               !session.alive() || context_->closed();
      };
      if (deadline == SteadyTime::max()) {
        signals_->changed.wait(lock, cancel, ready);
      } else {
        signals_->changed.wait_until(lock, cancel, deadline, ready);
      }
      if (signals_->check_queue && !signals_->handed_over_at && notes_expected) {
        // The predecessor is gone. If it handed over, its note comes in the
        // same revision, right behind on the same stream: worth a moment's
        // wait, since it spares a read.
        signals_->changed.wait_for(lock, kNoteGrace,
                                   [&]() ETCDLOCK_REQUIRES(signals_->mu) { return signals_->handed_over_at.has_value(); });
      }
      handed_over_at = signals_->handed_over_at;
      refused = signals_->refused;
      check_queue = std::exchange(signals_->check_queue, false);
    }
    if (handed_over_at) return acquire();
    if (context_->closed()) throw context_->closed_error();
    if (!session.alive()) return lose_entry();
    if (!refused.empty()) {
      throw Error(errc::permission_denied, "etcd refused to watch " + quote_value(predecessor_key_) +
                                               ", the entry ahead in the queue: " + refused);
    }
    if (!check_queue) return Result::not_acquired;  // cancelled, or the deadline passed
    const auto fresh = read_predecessor(deadline);
    if (!fresh) return lose_entry();
    if (!fresh->predecessor) return acquire();
    if (fresh->predecessor->key != predecessor_key_) watch_predecessor(*fresh);
  }
}

void QueueWait::watch_predecessor(const Read& read) {
  stop_watching();
  predecessor_key_ = read.predecessor->key;
  // From the revision after the read: every deletion since is delivered.
  predecessor_watch_ = context_->watches().add(predecessor_key_, "", read.revision + 1,
                                               std::make_shared<PredecessorWatch>(signals_),
                                               etcd::WatchHub::Events::deletes_only);
}

void QueueWait::stop_watching() {
  if (predecessor_watch_ != 0) context_->watches().remove(std::exchange(predecessor_watch_, 0));
  predecessor_key_.clear();
}

QueueWait::Result QueueWait::lose_entry() {
  // A create in doubt stays so: it could still land on this key.
  stop_watching();
  own_.reset();
  create_sent_ = false;
  signals_->reset();
  return Result::entry_lost;
}

QueueWait::Result QueueWait::acquire() {
  stop_watching();
  acquired_ = Acquired{*own_, waited_, in_doubt_};
  return Result::acquired;
}

}  // namespace etcdlock::detail
