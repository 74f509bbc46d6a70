#include "keys/queue_requests.h"

namespace etcdlock::detail {
namespace {

void add_put(google::protobuf::RepeatedPtrField<pb::RequestOp>& ops, const std::string& key, const std::string& value,
             std::int64_t lease) {
  auto* put = ops.Add()->mutable_request_put();
  put->set_key(key);
  put->set_value(value);
  put->set_lease(lease);
}

void add_delete(google::protobuf::RepeatedPtrField<pb::RequestOp>& ops, const std::string& key) {
  ops.Add()->mutable_request_delete_range()->set_key(key);
}

void add_get(google::protobuf::RepeatedPtrField<pb::RequestOp>& ops, const std::string& key) {
  ops.Add()->mutable_request_range()->set_key(key);
}

// Compares the create revision of [key, range_end) with `revision`.
void add_created_at(pb::TxnRequest& txn, const std::string& key, const std::string& range_end, std::int64_t revision) {
  auto* compare = txn.add_compare();
  compare->set_key(key);
  compare->set_range_end(range_end);
  compare->set_target(pb::Compare::CREATE);
  compare->set_result(pb::Compare::EQUAL);
  compare->set_create_revision(revision);
}

// The queue's newest entries, as a Txn that created ours reads them: ours,
// then `ahead.limit` before it.
pb::RangeRequest newest_read(const QueueDir& queue, const AheadRead& ahead) {
  auto newest = queue_range(queue);
  newest.set_sort_order(pb::RangeRequest::DESCEND);
  newest.set_limit(1 + ahead.limit);
  newest.set_keys_only(!ahead.values);
  return newest;
}

pb::TxnRequest inbox_notes_txn(const InboxNotes& notes) {
  auto txn = while_all_created_at(notes.successors);
  add_put(*txn.mutable_success(), notes.inbox, notes.notes, notes.lease);
  return txn;
}

// The queue's first entry, with its value.
pb::RangeRequest first_entry_read(const QueueDir& queue) {
  auto first = queue_range(queue);
  first.set_keys_only(false);
  first.set_limit(1);
  return first;
}

}  // namespace

pb::RangeRequest queue_range(const QueueDir& queue) {
  pb::RangeRequest range;
  range.set_key(queue.dir);
  range.set_range_end(queue.end());
  range.set_sort_target(pb::RangeRequest::CREATE);
  range.set_sort_order(pb::RangeRequest::ASCEND);
  range.set_keys_only(true);
  return range;
}

pb::TxnRequest enqueue_txn(const QueueDir& queue, const std::string& key, const std::string& value, std::int64_t lease,
                           const AheadRead& ahead) {
  pb::TxnRequest txn;
  add_created_at(txn, key, "", 0);  // absent
  add_put(*txn.mutable_success(), key, value, lease);
  *txn.add_success()->mutable_request_range() = newest_read(queue, ahead);
  add_get(*txn.mutable_failure(), key);
  return txn;
}

pb::TxnRequest enqueue_if_empty_txn(const QueueDir& queue, const std::string& key, const std::string& value,
                                    std::int64_t lease) {
  pb::TxnRequest txn;
  add_created_at(txn, queue.dir, queue.end(), 0);  // holds for an empty range only
  add_put(*txn.mutable_success(), key, value, lease);
  add_get(*txn.mutable_failure(), key);
  auto first = queue_range(queue);
  first.set_limit(1);
  *txn.add_failure()->mutable_request_range() = first;
  return txn;
}

pb::TxnRequest ahead_read(const QueueDir& queue, const QueueEntry& own, std::int64_t below, const AheadRead& ahead) {
  pb::TxnRequest txn;  // no compares: the success branch, a read in one revision
  add_get(*txn.mutable_success(), own.key);
  auto earlier = queue_range(queue);
  earlier.set_sort_order(pb::RangeRequest::DESCEND);
  earlier.set_max_create_revision(below - 1);
  earlier.set_limit(ahead.limit);
  earlier.set_keys_only(!ahead.values);
  *txn.add_success()->mutable_request_range() = earlier;
  return txn;
}

pb::TxnRequest while_created_at(const std::string& key, std::int64_t revision) {
  pb::TxnRequest txn;
  add_created_at(txn, key, "", revision);
  return txn;
}

pb::TxnRequest release_txn(const QueueDir& queue, const QueueEntry& own) {
  auto txn = while_created_at(own.key, own.revision);
  add_delete(*txn.mutable_success(), own.key);
  // Operations of a Txn see the ones before them: this reads the new first.
  *txn.add_success()->mutable_request_range() = first_entry_read(queue);
  return txn;
}

pb::TxnRequest removal_txn(const QueueDir& queue, const QueueEntry& own) {
  auto txn = release_txn(queue, own);
  *txn.add_failure()->mutable_request_range() = first_entry_read(queue);
  return txn;
}

pb::TxnRequest entry_and_first_read(const QueueDir& queue, const std::string& key) {
  pb::TxnRequest txn;  // no compares: the success branch, a read in one revision
  add_get(*txn.mutable_success(), key);
  *txn.add_success()->mutable_request_range() = first_entry_read(queue);
  return txn;
}

pb::TxnRequest multi_enqueue_txn(const std::vector<QueueDir>& queues, const std::vector<std::string>& keys,
                                 const std::string& value, std::int64_t lease, const AheadRead& ahead) {
  pb::TxnRequest txn;
  for (const auto& key : keys) {
    add_created_at(txn, key, "", 0);  // absent
    add_put(*txn.mutable_success(), key, value, lease);
    add_get(*txn.mutable_failure(), key);
  }
  // Operations of a Txn see the ones before them: each queue's read shows
  // our entry and what was ahead of it at this revision.
  for (const auto& queue : queues) *txn.add_success()->mutable_request_range() = newest_read(queue, ahead);
  return txn;
}

pb::TxnRequest while_all_created_at(const std::vector<QueueEntry>& own) {
  pb::TxnRequest txn;
  for (const auto& entry : own) add_created_at(txn, entry.key, "", entry.revision);
  return txn;
}

pb::TxnRequest multi_release_txn(const std::vector<QueueDir>& queues, const std::vector<QueueEntry>& own,
                                 std::span<const InboxNotes> notes) {
  auto txn = while_all_created_at(own);
  for (const auto& entry : own) {
    add_delete(*txn.mutable_success(), entry.key);
    add_get(*txn.mutable_failure(), entry.key);
  }
  for (const auto& queue : queues) *txn.add_success()->mutable_request_range() = first_entry_read(queue);
  for (const auto& each : notes) *txn.add_success()->mutable_request_txn() = inbox_notes_txn(each);
  return txn;
}

pb::TxnRequest notes_txn(std::span<const InboxNotes> notes) {
  pb::TxnRequest txn;
  for (const auto& each : notes) *txn.add_success()->mutable_request_txn() = inbox_notes_txn(each);
  return txn;
}

pb::RangeRequest head_read(const QueueDir& queue) {
  auto head = queue_range(queue);
  head.set_keys_only(false);
  head.set_limit(2);
  return head;
}

pb::RangeRequest own_and_next_read(const QueueDir& queue, const QueueEntry& own) {
  auto read = queue_range(queue);
  read.set_keys_only(false);
  read.set_min_create_revision(own.revision);
  read.set_limit(kOwnAndNextPage);
  return read;
}

pb::TxnRequest hand_over_txn(const QueueDir& queue, const QueueEntry& holder, const Successor& successor,
                             std::int64_t limit, const std::string& note) {
  auto inner = while_created_at(successor.entry.key, successor.entry.revision);
  add_delete(*inner.mutable_success(), holder.key);
  add_put(*inner.mutable_success(), successor.inbox, note, successor.lease);
  add_delete(*inner.mutable_failure(), holder.key);
  // Operations of a Txn see the ones before them: this reads who holds now.
  auto holding = queue_range(queue);
  holding.set_keys_only(false);
  holding.set_limit(limit);
  *inner.add_failure()->mutable_request_range() = holding;
  auto txn = while_created_at(holder.key, holder.revision);
  *txn.add_success()->mutable_request_txn() = std::move(inner);
  return txn;
}

pb::TxnRequest note_txn(const QueueEntry& successor, const std::string& inbox, std::int64_t successor_lease,
                        const std::string& note) {
  auto txn = while_created_at(successor.key, successor.revision);
  add_put(*txn.mutable_success(), inbox, note, successor_lease);
  return txn;
}

}  // namespace etcdlock::detail
