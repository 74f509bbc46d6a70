#include "queue/entry_removal.h"

#include "etcd/lost_replies.h"
#include "keys/key_layout.h"
#include "queue/hand_over.h"

namespace etcdlock::detail {

void remove_entry(PrimitiveContext& context, const Leftover& leftover, std::int64_t lease_id) noexcept {
  if (context.closed()) return;  // the lease revoke takes every entry
  const QueueEntry& entry = leftover.entry;
  if (!leftover.in_doubt && entry.revision != 0) {
    const QueueDir queue{queue_dir_of_entry(entry.key)};
    try {
      const auto removal = context.client().txn(release_txn(queue, entry), context.client().command_deadline(),
                                                etcd::write_site::removal);
      // A lock's waiter behind it may have waited for it: told as a release
      // would tell it.
      if (removal.succeeded())
        note_first_behind(context.client(), queue, removal.responses(1).response_range(), entry.revision);
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
  context.strays().retire(entry.key, lease_id, leftover.in_doubt ? 0 : entry.revision);
}

}  // namespace etcdlock::detail
