// LockImpl: the state behind one named Lock: which thread of this process
// holds it, how deep, and its hold in etcd.
//
// Two levels of exclusion. Locally, one thread at a time has the Turn: it
// acquires, holds with a hold count, and releases. Remotely, the thread with
// the turn takes a place in the etcd queue (QueueAcquisition) and holds the
// lock (Hold) when its entry is first.
//
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <system_error>

#include "etcdlock/options.h"
#include "queue/hold.h"
#include "queue/lock_context.h"
#include "queue/lock_metrics.h"
#include "keys/queue_requests.h"
#include "queue/queue_wait.h"
#include "queue/turn.h"
#include "base/mutex.h"

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
  // Logs a warning: `call` (unlock()) by a thread that holds nothing, which
  // the throwing-free unlock() cannot report otherwise.
  void warn_not_held(std::string_view call) const noexcept;

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
  // The etcd part of acquire(): a place in the queue, the wait, the hold.
  bool acquire_in_etcd(SteadyTime deadline, const std::stop_token& cancel, Mode mode);
  // The last unlock's work in etcd: give the hold up (Hold::give_up), and
  // when a successor waits, hand the lock over to it.
  void release_in_etcd(Hold& hold, bool in_doubt, std::error_code& ec) noexcept;
  // A Txn that commits only while this hold is valid; nullopt when not held.
  std::optional<pb::TxnRequest> guarded_txn() const;

  const std::shared_ptr<LockContext> context_;
  const std::string name_;
  const std::shared_ptr<LockCounters> counters_;  // null when metrics are off
  const QueueDir queue_;
  const LockOptions options_;
  Turn turn_;

  // Lock order: mu_, then the turn's; no request to etcd is made under mu_.
  mutable Mutex mu_;
  std::shared_ptr<Hold> hold_ ETCDLOCK_GUARDED_BY(mu_);  // the turn's owner's hold
  bool hold_in_doubt_ ETCDLOCK_GUARDED_BY(mu_) = false;  // its key is retired at release
  int depth_ ETCDLOCK_GUARDED_BY(mu_) = 0;               // the owner's hold count
  bool last_hold_lost_ ETCDLOCK_GUARDED_BY(mu_) = false;
  std::string last_key_ ETCDLOCK_GUARDED_BY(mu_);
  // The last hold waited, or the last release found a successor: the next
  // release reads the queue first, to hand over with a note.
  bool expect_successor_ ETCDLOCK_GUARDED_BY(mu_) = false;
};

}  // namespace etcdlock::detail
