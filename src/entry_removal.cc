#include "entry_removal.h"

#include "etcd/lost_replies.h"

namespace etcdlock::detail {

bool remove_entry(LockContext& context, Fence& fence, const QueueWait::Leftover& leftover, std::int64_t lease_id,
                  std::function<void()> done) {
  if (context.closed()) return true;  // the lease revoke takes every entry
  const QueueEntry& entry = leftover.entry;
  pb::TxnRequest removal;
  if (leftover.in_doubt) {
    removal = fence.close_txn(entry, lease_id);
  } else {
    removal = while_created_at(entry.key, entry.revision);
    removal.add_success()->mutable_request_delete_range()->set_key(entry.key);
  }
  try {
    const auto response = context.client().txn(removal, context.client().command_deadline(), etcd::write_site::removal);
    if (leftover.in_doubt) fence.saw(lease_id, response.responses(2).response_range());
    return true;
  } catch (const Error& error) {
    if (error.value() != errc::unavailable) {
      context.log()(LogLevel::error, "could not delete a queue entry", {{"key", entry.key}, {"error", error.what()}});
      return true;
    }
  }
  context.pending_deletes().add({entry.key, std::move(removal), lease_id}, std::move(done));
  return false;
}

}  // namespace etcdlock::detail
