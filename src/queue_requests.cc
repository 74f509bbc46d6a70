#include "queue_requests.h"

namespace etcdlock::detail {

pb::RangeRequest queue_range(const std::string& dir, const std::string& dir_end) {
  pb::RangeRequest range;
  range.set_key(dir);
  range.set_range_end(dir_end);
  range.set_sort_target(pb::RangeRequest::CREATE);
  range.set_sort_order(pb::RangeRequest::ASCEND);
  range.set_keys_only(true);
  return range;
}

namespace {

void add_put(pb::TxnRequest& txn, const std::string& key, const std::string& value, std::int64_t lease) {
  auto* put = txn.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(value);
  put->set_lease(lease);
}

// Compares the create revision of [key, range_end) with `revision`.
void add_created_at(pb::TxnRequest& txn, const std::string& key, const std::string& range_end,
                    std::int64_t revision) {
  auto* compare = txn.add_compare();
  compare->set_key(key);
  compare->set_range_end(range_end);
  compare->set_target(pb::Compare::CREATE);
  compare->set_result(pb::Compare::EQUAL);
  compare->set_create_revision(revision);
}

}  // namespace

pb::TxnRequest enqueue_txn(const std::string& dir, const std::string& dir_end, const std::string& key,
                           const std::string& value, std::int64_t lease) {
  pb::TxnRequest txn;
  add_created_at(txn, key, "", 0);  // absent
  add_put(txn, key, value, lease);
  auto head = queue_range(dir, dir_end);
  head.set_limit(kQueuePage);
  *txn.add_success()->mutable_request_range() = head;
  txn.add_failure()->mutable_request_range()->set_key(key);
  *txn.add_failure()->mutable_request_range() = head;
  return txn;
}

pb::TxnRequest enqueue_if_empty_txn(const std::string& dir, const std::string& dir_end, const std::string& key,
                                    const std::string& value, std::int64_t lease) {
  pb::TxnRequest txn;
  add_created_at(txn, dir, dir_end, 0);  // holds for an empty range only
  add_put(txn, key, value, lease);
  auto head = queue_range(dir, dir_end);
  head.set_limit(kQueuePage);
  *txn.add_failure()->mutable_request_range() = head;
  return txn;
}

pb::TxnRequest while_created_at(const std::string& key, std::int64_t revision) {
  pb::TxnRequest txn;
  add_created_at(txn, key, "", revision);
  return txn;
}

}  // namespace etcdlock::detail
