// Fence: makes sure that a request to create a queue entry, sent and then
// given up on, cannot create the entry later.
//
// A request whose reply is lost (its member died or hung, its deadline came)
// may still be applied, even long after the client gave up: a frozen leader
// that thaws forwards it. "Create our entry if absent" would then recreate an
// entry that no attempt waits for, on a lease this process keeps alive, and
// everyone queued behind it would wait as long as the process lives.
//
// So every create also compares the version of a fence key of its own (one
// per name and lease, outside every queue), and an attempt that had a create
// in doubt ends by deleting its entry and bumping the fence in one Txn; no
// create sent before that can apply after it.
#pragma once

#include <cstdint>
#include <string>

#include "etcd/rpc.pb.h"
#include "mutex.h"
#include "queue_requests.h"

namespace etcdlock::detail {

// Thread-safe.
class Fence {
 public:
  // The fence of the name whose fence keys start with `key_base`
  // (fence_key_base() in key_layout.h).
  explicit Fence(std::string key_base) : key_base_(std::move(key_base)) {}

  std::string key(std::int64_t lease_id) const;
  // The version that creates on `lease_id` compare: what this process last
  // saw of the fence, 0 (absent) until it saw any.
  std::int64_t version(std::int64_t lease_id) const;
  // What a Txn read of the fence showed.
  void saw(std::int64_t lease_id, const pb::RangeResponse& fence);

  // Deletes `entry`, whatever its create revision, and bumps the fence; then
  // reads it, for saw(). For the owner of the entry's key only: it must not
  // have another entry under that key meanwhile.
  pb::TxnRequest close_txn(const QueueEntry& entry, std::int64_t lease_id) const;

 private:
  const std::string key_base_;
  mutable Mutex mu_;
  std::int64_t lease_id_ ETCDLOCK_GUARDED_BY(mu_) = 0;
  std::int64_t version_ ETCDLOCK_GUARDED_BY(mu_) = 0;
};

}  // namespace etcdlock::detail
