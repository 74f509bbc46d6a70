// LockImpl: the state behind one named Lock: an ExclusiveHold (the turn among
// this process's threads, and the entry in etcd's queue) and how deep its
// owner holds it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <system_error>

#include "base/mutex.h"
#include "etcdlock/options.h"
#include "queue/async_acquisition.h"
#include "queue/exclusive_hold.h"
#include "queue/hand_over.h"
#include "queue/queue_wait.h"

namespace etcdlock::detail {

class LockImpl;

// What a LockHold owns: a hold of the lock, its turn taken.
struct AsyncLockHold {
  std::shared_ptr<LockImpl> lock;
  std::shared_ptr<Hold> hold;
  std::atomic<bool> released{false};
};

// Thread-safe.
class LockImpl : public std::enable_shared_from_this<LockImpl> {
 public:
  using Mode = QueueWait::Mode;

  LockImpl(std::shared_ptr<PrimitiveContext> context, std::string name, LockOptions options);
  // Releases a hold that was never unlocked.
  ~LockImpl();

  // True when this thread holds the lock; false when `mode` gave up or the
  // deadline passed. Throws Error (see Lock::lock()).
  bool acquire(SteadyTime deadline, std::stop_token cancel, Mode mode) ETCDLOCK_EXCLUDES(mu_);
  void release(std::error_code& ec) noexcept ETCDLOCK_EXCLUDES(mu_);

  // Asynchronous acquisition (async_acquisition.h): `done` is called once, on
  // a notifier thread, with the hold or an error.
  using AsyncDone = std::function<void(std::error_code, std::shared_ptr<AsyncLockHold>)>;
  void async_acquire(SteadyTime deadline, std::stop_token cancel, AsyncDone done);
  // Ends a hold that async_acquire() gave: as release(), from any thread.
  void release(AsyncLockHold& hold, std::error_code& ec) noexcept ETCDLOCK_EXCLUDES(mu_);
  // Logs a warning: `call` (unlock()) by a thread that holds nothing, which
  // the throwing-free unlock() cannot report otherwise.
  void warn_not_held(std::string_view call) const noexcept;
  // Logs a warning: an asynchronous acquisition's handler threw `what`
  // (whatever it held was released as the exception left it).
  void warn_handler_threw(std::string_view what) const noexcept;

  bool held() const { return exclusive_.held(); }
  bool held_by_this_thread() const { return exclusive_.held() && exclusive_.turn_owned_by_this_thread(); }
  const std::string& name() const { return exclusive_.named().name; }
  std::weak_ptr<const void> lifetime() const { return exclusive_.named().lifetime; }
  const LockOptions& options() const { return options_; }
  std::chrono::milliseconds command_timeout() const { return exclusive_.context().client().command_timeout(); }
  std::string key() const ETCDLOCK_EXCLUDES(mu_);
  std::stop_token lost_token() const { return exclusive_.lost_token(); }
  bool lost() const ETCDLOCK_EXCLUDES(mu_);
  std::int64_t fencing_token() const { return exclusive_.fencing_token(); }
  bool guarded_put(std::string_view key, std::string_view value) { return exclusive_.guarded_put(key, value); }
  bool guarded_delete(std::string_view key) { return exclusive_.guarded_delete(key); }
  // The name's turn and queue, which a MultiLock on a set with this name
  // takes too: this process's Lock and MultiLocks on the name exclude one
  // another through the turn.
  ExclusiveHold& exclusive() { return exclusive_; }

 private:
  // An asynchronous acquisition's outcome: the hold becomes this lock's.
  void async_acquired(AsyncAcquisition::Outcome outcome, const AsyncDone& done) ETCDLOCK_EXCLUDES(mu_);
  // The etcd part of acquire(): a place in the queue, the wait, the hold.
  bool acquire_in_etcd(SteadyTime deadline, const std::stop_token& cancel, Mode mode) ETCDLOCK_EXCLUDES(mu_);
  // The last unlock's work in etcd: give the hold up, and when a successor
  // waits, hand the lock over to it.
  void release_in_etcd(Hold& hold, bool in_doubt, std::error_code& ec) noexcept;

  const LockOptions options_;
  ExclusiveHold exclusive_;
  HandOverReleaser releaser_;

  // Lock order and etcd: see base/mutex.h.
  mutable Mutex mu_;
  int depth_ ETCDLOCK_GUARDED_BY(mu_) = 0;  // the owner's hold count
  bool last_hold_lost_ ETCDLOCK_GUARDED_BY(mu_) = false;
  // The key of the last attempt or hold, once it is not held: while held,
  // the hold has it (a copy per held lock would be memory for nothing).
  void remember_key(std::string key) ETCDLOCK_REQUIRES(mu_);
  std::string last_key_ ETCDLOCK_GUARDED_BY(mu_);
};

}  // namespace etcdlock::detail
