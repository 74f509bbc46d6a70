// PendingDeletes: queue entries that must go but whose delete could not reach
// etcd. Each is retried in the background until it is gone, or until its
// lease is, which takes its keys with it; an entry left behind would block
// every waiter behind it for as long as the manager lives.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "etcd/client.h"
#include "logger.h"
#include "mutex.h"
#include "queue_requests.h"
#include "session_source.h"
#include "worker.h"

namespace etcdlock::detail {

// Thread-safe: its state lives in the tasks it gives the worker.
class PendingDeletes {
 public:
  PendingDeletes(const etcd::Client& client, const Logger& log, SessionSource& sessions, Worker& worker)
      : client_(client), log_(log), sessions_(sessions), worker_(worker) {}

  // A removal to retry: the Txn that removes `key` (a delete guarded by its
  // create revision, or a fence's close), on lease `lease_id`.
  struct Removal {
    std::string key;
    pb::TxnRequest txn;
    std::int64_t lease_id = 0;
  };

  // Sends `removal` in the background until etcd answers, or the lease is
  // gone, then calls `done` on the worker's thread. Until then, the owner
  // must not create the same key again.
  void add(Removal removal, std::function<void()> done);
  // An entry of the queue in `dir` is still waiting to be removed.
  bool pending_in(std::string_view dir) const;

 private:
  // True when the entry is gone, or will go with its lease.
  bool try_remove(const Removal& removal) const;
  void attempt(std::shared_ptr<Removal> removal, std::function<void()> done);

  const etcd::Client& client_;
  const Logger& log_;
  SessionSource& sessions_;
  Worker& worker_;
  mutable Mutex mu_;
  std::multiset<std::string> pending_ ETCDLOCK_GUARDED_BY(mu_);  // keys
};

}  // namespace etcdlock::detail
