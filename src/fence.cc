#include "fence.h"

#include "etcdlock/lock_info.h"

namespace etcdlock::detail {

std::string Fence::key(std::int64_t lease_id) const { return key_base_ + lease_hex(lease_id); }

std::int64_t Fence::version(std::int64_t lease_id) const {
  MutexLock lock(mu_);
  return lease_id == lease_id_ ? version_ : 0;
}

void Fence::saw(std::int64_t lease_id, const pb::RangeResponse& fence) {
  MutexLock lock(mu_);
  lease_id_ = lease_id;
  version_ = fence.kvs_size() > 0 ? fence.kvs(0).version() : 0;
}

pb::TxnRequest Fence::close_txn(const QueueEntry& entry, std::int64_t lease_id) const {
  pb::TxnRequest txn;  // no compares: always the success branch
  txn.add_success()->mutable_request_delete_range()->set_key(entry.key);
  auto* bump = txn.add_success()->mutable_request_put();
  bump->set_key(key(lease_id));
  bump->set_lease(lease_id);
  txn.add_success()->mutable_request_range()->set_key(key(lease_id));
  return txn;
}

}  // namespace etcdlock::detail
