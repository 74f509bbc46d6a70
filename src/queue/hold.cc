#include "queue/hold.h"

#include "base/mutex.h"
#include "keys/key_layout.h"
#include "queue/entry_removal.h"

namespace etcdlock::detail {
namespace {

constexpr auto kCheckRetryPause = std::chrono::milliseconds(200);

}  // namespace

// The watch on the hold's own key. The hub may call it after the hold is
// gone, so it holds the hold weakly.
class Hold::KeyWatch final : public etcd::WatchListener {
 public:
  explicit KeyWatch(std::weak_ptr<Hold> hold) : hold_(std::move(hold)) {}
  void on_created(std::int64_t) override {
    // The watch sees deletes from now on; one since the hold was confirmed
    // is seen by a read, made after the watch is in place.
    if (const auto hold = hold_.lock()) {
      hold->context_->worker().post([weak = hold_] {
        if (const auto hold = weak.lock()) hold->check_key();
      });
    }
  }
  void on_events(std::span<const etcd::WatchEvent> events) override {
    const auto hold = hold_.lock();
    if (!hold) return;
    for (const auto& event : events) {
      if (event.deleted && event.key == hold->entry_.key) hold->lose(LossCause::deleted);
    }
  }
  void on_gap() override {
    // A delete may have fallen into the gap: read the key, off this thread.
    if (const auto hold = hold_.lock()) {
      hold->context_->worker().post([weak = hold_] {
        if (const auto hold = weak.lock()) hold->check_key();
      });
    }
  }
  void on_failed(const std::string& reason) override {
    if (const auto hold = hold_.lock()) {
      hold->context_->log()(LogLevel::error, "etcd refused to watch a held key; its deletion will be seen at unlock",
                            {{"key", hold->entry_.key}, {"reason", reason}});
    }
  }

 private:
  std::weak_ptr<Hold> hold_;
};

Hold::Hold(std::shared_ptr<PrimitiveContext> context, std::shared_ptr<Session> session, QueueEntry entry,
           std::string kind, std::string name, std::shared_ptr<PrimitiveCounters> counters,
           std::optional<Successor> successor)
    : context_(std::move(context)),
      session_(std::move(session)),
      entry_(std::move(entry)),
      successor_(successor ? std::make_unique<const Successor>(std::move(*successor)) : nullptr),
      kind_(std::move(kind)),
      name_(std::move(name)),
      counters_(std::move(counters)) {}

Hold::~Hold() { finish(); }

void Hold::OnHold::operator()() const {
  if (const auto locked = hold.lock()) act(*locked);
}

void Hold::start() {
  std::weak_ptr<Hold> weak = weak_from_this();
  MutexLock lock(mu_);
  // A token requested already runs its callback here, at once; lose() takes
  // no mutex, so that is safe under mu_. On close, our entry goes with the
  // lease that close() revokes next: the entry behind it is told, as by an
  // unlock, not left to its deferred watch.
  on_session_lost_ = std::make_unique<LossCallback>(session_->lost_token(),
                                                    OnHold{weak, [](Hold& hold) { hold.lose(LossCause::lease); }});
  on_closed_ = std::make_unique<LossCallback>(context_->closed_token(), OnHold{weak, [](Hold& hold) {
                                                                                 hold.hand_over_on_close();
                                                                                 hold.lose(LossCause::closed);
                                                                               }});
  watch_task_ = context_->worker().post_at(SteadyClock::now() + kWatchDelay, [weak] {
    if (const auto hold = weak.lock()) hold->watch_key();
  });
}

void Hold::finish(Closing closing) {
  std::unique_ptr<LossCallback> on_closed;
  if (closing == Closing::ignore) {
    MutexLock lock(mu_);
    on_closed = std::move(on_closed_);
  }
  if (finished_.exchange(true)) return;  // destroys a closed callback kept until now, outside mu_
  if (counters_) counters_->hold.observe(SteadyClock::now() - started_);
  std::unique_ptr<LossCallback> on_session_lost;
  std::uint64_t watch_task = 0;
  std::int64_t watch = 0;
  {
    MutexLock lock(mu_);
    on_session_lost = std::move(on_session_lost_);
    watch_task = std::exchange(watch_task_, 0);
    watch = std::exchange(watch_, 0);
  }
  // Destroyed outside mu_: a callback under way on another thread is waited for.
  on_session_lost.reset();
  on_closed.reset();
  if (watch_task != 0) context_->worker().cancel(watch_task);
  if (watch != 0) context_->watches().remove(watch);
}

void Hold::lose(LossCause cause, bool even_if_finished) {
  if (finished_.load() && !even_if_finished) return;
  if (lost_.exchange(true)) return;
  if (counters_) counters_->lost(cause);
  const char* reason = cause == LossCause::lease         ? "its lease was lost"
                       : cause == LossCause::deleted     ? "its key was deleted"
                       : cause == LossCause::unconfirmed ? "the write that gave it up went unanswered"
                                                         : "the manager was closed";
  context_->log()(LogLevel::warning, kind_ + " lost", {{"name", name_}, {"key", entry_.key}, {"reason", reason}});
  context_->notifier().post([source = lost_source_]() mutable { source.request_stop(); });
}

void Hold::give_up(const std::function<bool()>& remove_entry, bool in_doubt, std::error_code& ec) noexcept {
  finish(Closing::follow);
  release_entry(remove_entry, in_doubt, ec);
  finish();  // the release is answered (or given up): the close need not note for it any more
  // A note put for the entry while it stood is read and deleted, though the
  // inbox's watch may be parked by now (see HandOverInbox::entry_gone).
  context_->inbox().entry_gone();
}

void Hold::release_entry(const std::function<bool()>& remove_entry, bool in_doubt, std::error_code& ec) noexcept {
  const Leftover leftover{entry_, in_doubt};
  if (lost()) {
    ec = make_error_code(errc::lock_expired);
    // Lost at its local deadline, the entry may still be in etcd, blocking
    // the queue until the lease expires there: remove it while it is the same.
    detail::remove_entry(*context_, leftover, lease_id());
  } else if (context_->closed()) {
    // The lease revoke takes the entry; the closed callback, kept by
    // finish(Closing::follow), registers our queue for close()'s note. But
    // closed() is true as soon as close() requests the stop, before it runs
    // the callbacks one by one, and give_up()'s finish() destroys ours: a
    // std::stop_callback destroyed before its turn never runs. So the queue
    // is registered here too (twice is harmless), before the revoke's reply,
    // when close() collects them. (Without this line a multi-lock, whose
    // holds' callbacks are many and late in the list, lost the note in 2 of
    // 2 runs of ReviewClose.CloseRacingAMultiLockUnlockNotesTheNextWaiter.)
    hand_over_on_close();
  } else {
    try {
      if (!remove_entry()) {
        lose(LossCause::deleted, /*even_if_finished=*/true);  // before the owner gave it up
        ec = make_error_code(errc::lock_expired);
      } else if (in_doubt) {
        context_->strays().retire(entry_.key, lease_id());
      }
    } catch (const Error& error) {
      if (error.value() == errc::unavailable) {
        context_->log()(
            LogLevel::warning,
            "no answer from etcd to giving up a " + kind_ + ": counted as lost, its entry is removed in the background",
            {{"name", name_}, {"key", entry_.key}, {"error", error.what()}});
        lose(LossCause::unconfirmed, /*even_if_finished=*/true);
        ec = make_error_code(errc::unavailable);
      } else {
        // Refused (permission denied, say): the entry still stands, so no one
        // else can be in; the caller learns why, and the removal is retried.
        context_->log()(LogLevel::error, "could not give up a " + kind_ + " in etcd; retrying in the background",
                        {{"name", name_}, {"key", entry_.key}, {"error", error.what()}});
        ec = error.code();
      }
      // With our revision: once the entry is found gone (the delete may have
      // landed) or removed, the waiter behind it gets the note that the
      // release's answer would have sent it.
      context_->strays().retire(entry_.key, lease_id(), entry_.revision);
    } catch (const std::exception& error) {
      context_->log()(LogLevel::error, "could not give up a " + kind_ + " in etcd; retrying in the background",
                      {{"name", name_}, {"key", entry_.key}, {"error", error.what()}});
      context_->strays().retire(entry_.key, lease_id(), entry_.revision);
    }
  }
}

void Hold::hand_over_on_close() noexcept {
  try {
    if (session_alive()) context_->hand_over_queue_on_close(queue_dir_of_entry(entry_.key), entry_.revision);
  } catch (...) {
    // Out of memory: the successor gets no note and waits for its deferred
    // watch. Runs in request_stop(), which must not throw.
  }
}

void Hold::signal_loss_now() {
  if (lost_.load()) lost_source_.request_stop();
}

void Hold::watch_key() {
  MutexLock lock(mu_);
  watch_task_ = 0;
  if (finished_.load() || lost_.load()) return;
  // From now, not from the confirmed revision: a watch that starts in the
  // past is caught up by etcd only every 100 ms, and a delete in between
  // would be signalled that late. The read after on_created() covers it.
  watch_ = context_->watches().add(entry_.key, "", 0, std::make_shared<KeyWatch>(weak_from_this()),
                                   etcd::WatchHub::Events::deletes_only);
}

void Hold::check_key() {
  if (finished_.load() || lost_.load()) return;
  // Asynchronous: a slow etcd must not hold up the worker, which starts
  // every other hold's watch. The reply is handled on the worker too: a
  // callback must not block, nor end a hold (or a manager) on gRPC's thread.
  pb::RangeRequest read;
  read.set_key(entry_.key);
  context_->client().range_async(
      std::move(read), context_->client().command_deadline(),
      [weak = weak_from_this(), &worker = context_->worker()](pb::RangeResponse&& found, const Error* error) {
        const bool retry = error && error->value() == errc::unavailable;
        const bool gone = !error && (found.kvs_size() == 0 || found.kvs(0).create_revision() == 0);
        const std::int64_t revision = gone || error ? 0 : found.kvs(0).create_revision();
        worker.post_at(SteadyClock::now() + (retry ? kCheckRetryPause : std::chrono::milliseconds(0)),
                       [weak, retry, failed = error != nullptr, revision] {
                         const auto hold = weak.lock();
                         if (!hold) return;
                         if (retry) return hold->check_key();
                         // A release that began meanwhile deleted the key
                         // itself: it finished the hold first, and lose()
                         // ignores a finished hold.
                         if (!failed && revision != hold->entry_.revision) hold->lose(LossCause::deleted);
                       });
      });
}

}  // namespace etcdlock::detail
