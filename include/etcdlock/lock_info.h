// What an operator can learn about a lock: its holder and its queue.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace etcdlock {

// One entry of a lock's queue in etcd: a holder or a waiter.
struct QueueEntryInfo {
  std::string key;    // "<prefix>/<name>/<lease id in hex>"
  std::string owner;  // as its manager was told, or "unknown" for entries that
                      // store no etcdlock value (etcdctl lock, Go's Mutex)
  std::int64_t lease_id = 0;
  std::int64_t fencing_token = 0;  // the key's create revision: its place in the queue
  // When the entry joined the queue, by its own manager's clock; the epoch
  // when unknown. For a waiter, when it began to wait; for a holder, when it
  // began to wait or, uncontended, when it acquired.
  std::chrono::system_clock::time_point created_at;
  // Admitted: the holder of a lock, an election's leader, one of a
  // semaphore's permit holders or of a read-write lock's readers.
  bool holds = false;
  // An entry of a MultiLock: every name of its set, this one included, in
  // sorted order; empty for any other entry, and for a set whose names take
  // more than 1 KiB together (every entry would carry them all).
  // `etcdlock status` also knows a set's entries by their shared lease and
  // fencing token.
  std::vector<std::string> multi_lock_names;
};

// A lock (or election, semaphore, read-write lock) with at least one entry.
struct LockInfo {
  std::string name;  // the lock's name under the manager's prefix
  // The first entry of the queue: the holder, or the oldest holder when
  // several hold (a semaphore, readers).
  std::string key;
  std::string owner;
  std::int64_t lease_id = 0;
  std::int64_t fencing_token = 0;                    // the holder key's create revision
  std::chrono::system_clock::time_point created_at;  // as QueueEntryInfo's
  // What is left of the holder's lease TTL; -1 s once etcd has expired it.
  std::chrono::seconds ttl_remaining{0};
  std::size_t waiters = 0;  // entries not admitted yet
  // Every entry, in queue order (oldest first): the holders, then the
  // waiters in the order they are admitted, but for a read-write lock, whose
  // readers behind a writer are admitted together.
  std::vector<QueueEntryInfo> queue;
};

// A lease id as etcd's tools print it: lowercase hex.
std::string lease_hex(std::int64_t lease_id);

}  // namespace etcdlock
