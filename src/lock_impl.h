// LockImpl: the state behind one named Lock: which thread of this process
// holds it, how deep, and its hold in etcd.
//
// Two levels of exclusion. Locally, one thread at a time has the turn: it
// acquires, holds with a hold count, and releases; threads of one process
// share the lease, so etcd cannot tell them apart. Remotely, the thread with
// the turn takes a place in the etcd queue (QueueWait) and holds the lock
// (Hold) when its entry is first.
//
// The turn passes only when its owner gives it up, and never while an entry
// of this lock whose delete is pending could still be in etcd: a new attempt
// would find that entry under the same key and take it for its own.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>

#include "etcdlock/options.h"
#include "hold.h"
#include "lock_context.h"
#include "queue_requests.h"
#include "queue_wait.h"  // IWYU pragma: keep (Mode)
#include "mutex.h"

namespace etcdlock::detail {

// Thread-safe.
class LockImpl : public std::enable_shared_from_this<LockImpl> {
 public:
  using Mode = QueueWait::Mode;

  LockImpl(std::shared_ptr<LockContext> context, std::string name, LockOptions options);
  // Releases a hold that was never unlocked.
  ~LockImpl();

  // True when this thread holds the lock; false when `mode` gave up or the
  // deadline passed. Throws Error (see Lock::lock()).
  bool acquire(SteadyTime deadline, std::stop_token cancel, Mode mode);
  void release(std::error_code& ec) noexcept;

  bool held() const;
  bool held_by_this_thread() const;
  const std::string& name() const { return name_; }
  const LockOptions& options() const { return options_; }
  std::chrono::milliseconds command_timeout() const { return context_->client().command_timeout(); }
  std::string key() const;
  std::stop_token lost_token() const;
  bool lost() const;
  std::int64_t fencing_token() const;
  bool guarded_put(std::string_view key, std::string_view value);
  bool guarded_delete(std::string_view key);

 private:
  // Waits for the turn: true when this thread has it.
  bool take_turn(MutexLock& lock, SteadyTime deadline, const std::stop_token& cancel, Mode mode)
      ETCDLOCK_REQUIRES(mu_);
  void end_turn() ETCDLOCK_REQUIRES(mu_);
  // The etcd part of acquire(), retrying transient failures.
  bool acquire_in_etcd(SteadyTime deadline, const std::stop_token& cancel, Mode mode);
  // Deletes an entry this process left; when etcd cannot be reached, the
  // delete goes on in the background and the turn waits for it.
  void remove_entry(const QueueEntry& entry, std::int64_t lease_id);
  // The last unlock's work in etcd: delete the entry and, when a successor
  // waits, hand the lock over to it.
  void release_in_etcd(Hold& hold, std::error_code& ec);
  void hand_over(Hold& hold, std::error_code& ec);
  // A Txn that commits only while this hold is valid; nullopt when not held.
  std::optional<pb::TxnRequest> guarded_txn() const;
  Error cancelled_error() const;

  const std::shared_ptr<LockContext> context_;
  const std::string name_;
  const QueueDir queue_;
  const LockOptions options_;

  // Lock order: mu_ before any lock of the services; no request to etcd is
  // made under mu_.
  mutable Mutex mu_;
  std::condition_variable_any changed_;
  std::thread::id owner_ ETCDLOCK_GUARDED_BY(mu_);  // the thread with the turn
  int depth_ ETCDLOCK_GUARDED_BY(mu_) = 0;  // the owner's hold count
  std::shared_ptr<Hold> hold_ ETCDLOCK_GUARDED_BY(mu_);
  bool delete_pending_ ETCDLOCK_GUARDED_BY(mu_) = false;
  bool last_hold_lost_ ETCDLOCK_GUARDED_BY(mu_) = false;
  std::string last_key_ ETCDLOCK_GUARDED_BY(mu_);
  // The last hold waited, or the last release found a successor: the next
  // release reads the queue first, to hand over with a note.
  bool expect_successor_ ETCDLOCK_GUARDED_BY(mu_) = false;
};

}  // namespace etcdlock::detail
