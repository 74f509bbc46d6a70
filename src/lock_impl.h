// LockImpl: the state and algorithms behind one named Lock.
//
// Two levels of exclusion. Locally, one thread at a time owns the lock, with a
// hold count; threads of one process share the lease, so etcd cannot tell
// them apart. Remotely, the owning thread takes a place in the etcd queue under
// the lock's directory and becomes the holder when every earlier entry is gone.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "etcd/client.h"
#include "etcd/watch_hub.h"
#include "etcdlock/options.h"
#include "queue_wait.h"

namespace etcdlock::detail {

class ManagerCore;
class Session;

class LockImpl : public std::enable_shared_from_this<LockImpl> {
 public:
  enum class Mode {
    wait,      // wait in the queue until the deadline
    try_once,  // never wait: give up when someone else is first
  };

  LockImpl(std::shared_ptr<ManagerCore> core, std::string name, LockOptions options);
  // Releases a hold that was never unlocked, and stops the lock's watch.
  ~LockImpl();

  // True when this thread holds the lock; false when `mode` gave up or the
  // deadline passed. Throws Error (see Lock::lock()).
  bool acquire(etcd::SteadyTime deadline, std::stop_token cancel, Mode mode);
  void release(std::error_code& ec) noexcept;

  bool held() const;
  bool held_by_this_thread() const;
  const std::string& name() const { return name_; }
  const LockOptions& options() const { return options_; }
  std::chrono::milliseconds command_timeout() const;
  std::string key() const;
  std::stop_token lost_token() const;
  bool lost() const;
  std::int64_t fencing_token() const;
  bool guarded_put(std::string_view key, std::string_view value);
  bool guarded_delete(std::string_view key);

  // From the manager.
  void on_session_lost(std::int64_t lease_id);
  void on_manager_closed();
  void on_stranded_key_deleted();

 private:
  class WatchRelay;

  enum class Phase {
    free,       // no thread of this process holds or acquires the lock
    acquiring,  // owner_ is taking a place in the etcd queue
    held,       // owner_ holds it
    releasing,  // the last unlock is deleting the key
  };
  enum class Outcome { acquired, not_acquired, requeue };

  struct Hold {
    std::shared_ptr<Session> session;
    std::string key;
    std::int64_t revision = 0;  // the key's create revision: the fencing token
    bool lost = false;
    std::stop_source lost_source;
  };

  struct Enqueued {
    std::int64_t own_revision = 0;
    std::int64_t read_revision = 0;
    std::vector<std::string> ahead;
  };

  // Ends this thread's turn after an attempt that did not acquire.
  void give_up_turn();  // requires mu_
  // The thread-level turn, then the etcd queue.
  bool acquire_from_etcd(etcd::SteadyTime deadline, std::stop_token cancel, Mode mode);
  void ensure_watch(etcd::SteadyTime deadline);
  Outcome queue_and_wait(const std::shared_ptr<Session>& session, etcd::SteadyTime deadline, std::stop_token cancel,
                         Mode mode);
  std::optional<Enqueued> try_first(const Session& session, const std::string& key, etcd::SteadyTime deadline);
  Enqueued enqueue(const Session& session, const std::string& key, etcd::SteadyTime deadline);
  Enqueued read_ahead(std::int64_t own_revision, etcd::SteadyTime deadline);
  // A Txn that commits only while this hold is valid; nullopt when not held.
  std::optional<etcd::pb::TxnRequest> guarded_txn() const;
  // Deletes a queue entry we are leaving; hands it to the manager if etcd
  // cannot be reached, so that no stale entry blocks the queue.
  void remove_entry(const std::string& key, std::int64_t revision, std::int64_t lease_id);

  void on_watch_created(std::int64_t start_revision);
  void on_watch_events(std::span<const etcd::WatchEvent> events);
  void on_watch_gap();
  void on_watch_failed(const std::string& reason);
  // Marks the hold lost; returns the source to request after unlocking mu_,
  // since the user's stop callbacks may call back into this lock.
  std::optional<std::stop_source> lose_hold(const std::string& reason);  // requires mu_

  template <class Predicate>
  bool wait_until(std::unique_lock<std::mutex>& lock, etcd::SteadyTime deadline, std::stop_token cancel,
                  Predicate ready);

  const std::shared_ptr<ManagerCore> core_;
  const std::string name_;
  const std::string dir_;      // "<prefix>/<name>/"
  const std::string dir_end_;  // the end of the directory's key range
  const LockOptions options_;

  mutable std::mutex mu_;
  std::condition_variable_any changed_;
  Phase phase_ = Phase::free;               // guarded by mu_
  std::thread::id owner_;                   // guarded by mu_
  int depth_ = 0;                           // guarded by mu_
  std::optional<Hold> hold_;                // guarded by mu_
  std::optional<QueueWait> wait_;           // guarded by mu_
  std::string last_key_;                    // guarded by mu_
  bool last_hold_lost_ = false;             // guarded by mu_
  bool entry_stranded_ = false;             // guarded by mu_
  bool closed_ = false;                     // guarded by mu_
  std::int64_t watch_id_ = 0;               // guarded by mu_
  std::int64_t watch_start_ = 0;            // guarded by mu_
  std::string watch_failure_;               // why etcd refused the watch; guarded by mu_
};

}  // namespace etcdlock::detail
