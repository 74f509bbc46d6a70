// PendingDeletes: queue entries that must go but whose delete could not reach
// etcd. Each is retried in the background until it is gone, or until its
// lease is, which takes its keys with it; an entry left behind would block
// every waiter behind it for as long as the manager lives.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "etcd/client.h"
#include "logger.h"
#include "queue_requests.h"
#include "session_source.h"
#include "worker.h"

namespace etcdlock::detail {

// Thread-safe: its state lives in the tasks it gives the worker.
class PendingDeletes {
 public:
  PendingDeletes(const etcd::Client& client, const Logger& log, SessionSource& sessions, Worker& worker)
      : client_(client), log_(log), sessions_(sessions), worker_(worker) {}

  // Deletes `entry`, on lease `lease_id`, in the background, then calls
  // `done` on the worker's thread. An entry of revision 0 is one whose
  // creating request may or may not have been applied: it is read first, and
  // deleted only with the create revision read. Until `done`, the owner must
  // not create the same key again.
  void add(QueueEntry entry, std::int64_t lease_id, std::function<void()> done);

 private:
  // True when the entry is gone, or will go with its lease.
  bool try_delete(QueueEntry& entry, std::int64_t lease_id) const;
  void attempt(QueueEntry entry, std::int64_t lease_id, std::function<void()> done);

  const etcd::Client& client_;
  const Logger& log_;
  SessionSource& sessions_;
  Worker& worker_;
};

}  // namespace etcdlock::detail
