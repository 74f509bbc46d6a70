// ManagerCore: what a LockManager shares with its locks: the etcd client, the
// watch hub, the current session, and the registry of locks by name. Locks
// keep it alive, so a Lock may outlive its LockManager.
#pragma once

#include <chrono>
#include <condition_variable>
#include <thread>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "admin.h"
#include "etcd/client.h"
#include "etcd/watch_hub.h"
#include "etcdlock/lock.h"
#include "etcdlock/options.h"
#include "logger.h"
#include "session.h"

namespace etcdlock::detail {

class LockImpl;

// Thread-safe. No network call is made while mu_ is held.
class ManagerCore : public std::enable_shared_from_this<ManagerCore> {
 public:
  // Validates the options (throws Error), connects and grants the first lease.
  static std::shared_ptr<ManagerCore> create(ManagerOptions options);
  ~ManagerCore();

  std::shared_ptr<Lock> get_lock(std::string_view name, const LockOptions& options);
  void close() noexcept;
  bool closed() const;
  // Throws Error(errc::closed) after close().
  void check_open() const;

  // The live session, granting a new lease when the last one was lost. Only
  // callers that need a lease wait for the grant. Throws Error: closed,
  // unavailable.
  std::shared_ptr<Session> session(etcd::SteadyTime deadline);

  // The value stored in this manager's queue keys.
  std::string holder_value() const;

  // A queue entry that could not be deleted because etcd was unreachable.
  struct StrandedEntry {
    std::string key;
    std::int64_t revision = 0;  // its create revision; 0 when unknown
    std::int64_t lease_id = 0;
    std::weak_ptr<LockImpl> owner;  // told when the entry is gone
  };
  // Deletes the entry in the background, retrying until it succeeds or its
  // lease dies, so that a stale entry never blocks the queue.
  void release_later(StrandedEntry entry);

  // The session, live or not; null after close().
  std::shared_ptr<Session> current_session() const;

  const ManagerOptions& options() const { return options_; }
  const etcd::Client& client() const { return *client_; }
  etcd::WatchHub& watches() { return *watches_; }
  const Logger& log() const { return log_; }
  const Admin& admin() const { return admin_; }
  SessionState state() const;

 private:
  explicit ManagerCore(ManagerOptions options);
  void on_session_lost(Session& session, const std::string& reason);
  Error closed_error() const;
  std::vector<std::shared_ptr<LockImpl>> live_locks() const;  // requires !mu_
  void run_janitor();
  bool delete_stranded(const StrandedEntry& entry);  // true when the entry is gone

  const ManagerOptions options_;
  const Logger log_;
  std::unique_ptr<etcd::Client> client_;
  std::unique_ptr<etcd::WatchHub> watches_;
  std::string hostname_;
  Admin admin_;

  struct Entry {
    std::weak_ptr<Lock> lock;
    std::weak_ptr<LockImpl> impl;
  };

  mutable std::mutex mu_;
  std::condition_variable janitor_wake_;
  std::condition_variable session_changed_;
  bool closed_ = false;                                  // guarded by mu_
  std::shared_ptr<Session> session_;                     // guarded by mu_
  bool granting_ = false;  // a thread is granting a new lease, not under mu_; guarded by mu_
  std::unordered_map<std::string, Entry> locks_;         // guarded by mu_
  std::vector<StrandedEntry> stranded_;                  // guarded by mu_
  std::thread janitor_;
};

}  // namespace etcdlock::detail
