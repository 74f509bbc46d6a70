// The etcd requests of the lock protocol, built in one place so that the
// lock, the admin operations and the benchmark's raw floor send the same ones.
#pragma once

#include <cstdint>
#include <string>

#include "etcd/rpc.pb.h"

namespace etcdlock::detail {

namespace pb = ::etcdserverpb;

// How many queue entries an enqueue reads: enough for every waiter of a busy
// lock; a longer queue costs one more read.
inline constexpr std::int64_t kQueuePage = 64;

// The queue's entries, oldest first, keys only.
pb::RangeRequest queue_range(const std::string& dir, const std::string& dir_end);

// etcd's recipe in one Txn: create `key` on `lease` unless it exists (a retry
// of a request that was applied), and read the head of the queue. Success:
// [put, range]; failure: [range of key, range of the queue].
pb::TxnRequest enqueue_txn(const std::string& dir, const std::string& dir_end, const std::string& key,
                           const std::string& value, std::int64_t lease);

// Create `key` only if the queue is empty; otherwise read its head. Success:
// [put]; failure: [range of the queue].
pb::TxnRequest enqueue_if_empty_txn(const std::string& dir, const std::string& dir_end, const std::string& key,
                                    const std::string& value, std::int64_t lease);

// A Txn whose success branch runs only while `key` exists with create
// revision `revision`: a hold, or an entry, that is still the same one.
pb::TxnRequest while_created_at(const std::string& key, std::int64_t revision);

}  // namespace etcdlock::detail
