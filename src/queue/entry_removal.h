// Removing an entry that a queue attempt or a hold leaves behind.
#pragma once

#include <cstdint>

#include "keys/queue_requests.h"
#include "queue/primitive_context.h"

namespace etcdlock::detail {

// An entry that an attempt or a hold may have left in etcd.
struct Leftover {
  QueueEntry entry;       // revision 0 when its creation is in doubt
  bool in_doubt = false;  // a create went unanswered: it may land later (retire the key)
};

// Removes `leftover`, an entry on lease `lease_id` that nothing of this
// manager claims any more: at once with a delete guarded by its create
// revision when that is known and etcd answers; otherwise its key is retired
// (see stray_entries.h), which removes it, and any create of it that lands
// later, in the background. Never throws; the key may be used again only
// when the delete was answered.
void remove_entry(PrimitiveContext& context, const Leftover& leftover, std::int64_t lease_id) noexcept;

}  // namespace etcdlock::detail
