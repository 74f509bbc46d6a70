#include "queue/entry_removal.h"

#include "etcd/lost_replies.h"

namespace etcdlock::detail {

void remove_entry(PrimitiveContext& context, const Leftover& leftover, std::int64_t lease_id) noexcept {
  if (context.closed()) return;  // the lease revoke takes every entry
  const QueueEntry& entry = leftover.entry;
  if (!leftover.in_doubt && entry.revision != 0) {
    auto removal = while_created_at(entry.key, entry.revision);
    removal.add_success()->mutable_request_delete_range()->set_key(entry.key);
    try {
      context.client().txn(removal, context.client().command_deadline(), etcd::write_site::removal);
      return;
    } catch (const Error& error) {
      if (error.value() != errc::unavailable) {
        context.log()(LogLevel::error, "could not delete a queue entry", {{"key", entry.key}, {"error", error.what()}});
      }
    } catch (...) {
      // Retired below all the same.
    }
  }
  // Whether it is there, or will be, is unknown.
  context.strays().retire(entry.key, lease_id);
}

}  // namespace etcdlock::detail
