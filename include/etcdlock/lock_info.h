// What an operator can learn about a held lock.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace etcdlock {

struct LockInfo {
  std::string name;   // the lock's name under the manager's prefix
  std::string key;    // the holder's etcd key
  std::string owner;  // as the holder's manager was told, or "unknown" for holders
                      // that store no etcdlock value (etcdctl lock, Go's Mutex)
  std::int64_t lease_id = 0;
  std::int64_t fencing_token = 0;  // the holder key's create revision
  // When the holder took its place in the queue, by its own clock; the epoch
  // when unknown.
  std::chrono::system_clock::time_point created_at;
  // What is left of the holder's lease TTL; -1 s once etcd has expired it.
  std::chrono::seconds ttl_remaining{0};
  std::size_t waiters = 0;  // entries queued behind the holder
};

// A lease id as etcd's tools print it: lowercase hex.
std::string lease_hex(std::int64_t lease_id);

}  // namespace etcdlock
