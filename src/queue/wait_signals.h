// WaitSignals and BlockerWatch: what a QueueWait's waiting thread waits for,
// and the watch that tells it an entry ahead of it changed.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/mutex.h"
#include "etcd/watch_hub.h"
#include "session/inbox.h"

namespace etcdlock::detail {

// What the waiting thread waits for, set from the watch hub's thread (notes,
// the predecessor's deletion), the session's thread and the closing thread.
// An asynchronous waiter has no thread that waits: its waker is called instead.
struct WaitSignals final : HandOverReceiver {
  Mutex mu;
  std::condition_variable_any changed;
  const std::int64_t limit;                               // the queue's, to accept a note
  std::int64_t own_revision ETCDLOCK_GUARDED_BY(mu) = 0;  // 0 until known
  std::vector<std::pair<std::int64_t, std::int64_t>> early
      ETCDLOCK_GUARDED_BY(mu);  // notes before own_revision was known
  std::optional<std::int64_t> handed_over_at ETCDLOCK_GUARDED_BY(mu);
  bool check_queue ETCDLOCK_GUARDED_BY(mu) = false;
  bool watch_due ETCDLOCK_GUARDED_BY(mu) = false;       // a deferred watch of the entries ahead is to start
  std::string refused ETCDLOCK_GUARDED_BY(mu);          // why etcd refused a watch
  std::function<void()> waker ETCDLOCK_GUARDED_BY(mu);  // an asynchronous waiter's (QueueWait::set_waker)

  explicit WaitSignals(std::int64_t queue_limit) : limit(queue_limit) {}

  void on_note(std::int64_t entry_revision, std::int64_t note_limit, std::int64_t revision) override {
    if (note_limit != limit) return;  // for a queue of another kind under the same name: not ours to trust
    signal([&]() ETCDLOCK_REQUIRES(mu) {
      if (own_revision == 0) {
        early.emplace_back(entry_revision, revision);
      } else if (entry_revision == own_revision) {
        handed_over_at = revision;
      }
    });
  }
  void on_notes_missed() override { ask_check(); }

  void ask_check() {
    signal([&]() ETCDLOCK_REQUIRES(mu) { check_queue = true; });
  }
  // The deferral of a watch of the entries ahead is over (QueueWait::watch).
  void deferred_watch_due() {
    signal([&]() ETCDLOCK_REQUIRES(mu) { watch_due = true; });
  }
  void refuse(const std::string& reason) {
    signal([&]() ETCDLOCK_REQUIRES(mu) { refused = reason.empty() ? "permission denied" : reason; });
  }
  void wake() {
    signal([]() {});
  }
  // Makes `change` under mu, then wakes the waiting thread, or the waker
  // outside mu (it may take the waiter's own locks).
  template <class Change>
  void signal(const Change& change) ETCDLOCK_EXCLUDES(mu) {
    std::function<void()> wake_waiter;
    {
      MutexLock lock(mu);
      change();
      wake_waiter = waker;
    }
    notify(wake_waiter);
  }
  void set_own(std::int64_t revision) {
    MutexLock lock(mu);
    own_revision = revision;
    for (const auto& [entry_revision, at] : early) {
      if (entry_revision == revision) handed_over_at = at;
    }
    early.clear();
  }
  void notify(const std::function<void()>& wake_waiter) {
    changed.notify_all();
    if (wake_waiter) wake_waiter();
  }
  void reset() {
    MutexLock lock(mu);
    own_revision = 0;
    early.clear();
    handed_over_at.reset();
    check_queue = false;
    watch_due = false;
    refused.clear();
  }
};

// The watch on an entry that holds us back. The hub may call it after it is
// removed, so it shares the signals rather than pointing at the wait.
class BlockerWatch final : public etcd::WatchListener {
 public:
  BlockerWatch(std::shared_ptr<WaitSignals> signals, bool check_when_created)
      : signals_(std::move(signals)), check_when_created_(check_when_created) {}
  void on_created(std::int64_t) override {
    // A watch from now: what changed before it started, a read sees.
    if (check_when_created_) signals_->ask_check();
  }
  void on_events(std::span<const etcd::WatchEvent> events) override {
    if (!events.empty()) signals_->ask_check();
  }
  void on_gap() override { signals_->ask_check(); }
  void on_failed(const std::string& reason) override { signals_->refuse(reason); }

 private:
  std::shared_ptr<WaitSignals> signals_;
  const bool check_when_created_;
};

}  // namespace etcdlock::detail
