// Removing an entry that a queue attempt or a hold leaves behind.
#pragma once

#include <cstdint>

#include "queue/lock_context.h"
#include "queue/queue_wait.h"

namespace etcdlock::detail {

// Removes `leftover`, an entry on lease `lease_id` that nothing of this
// manager claims any more: at once with a delete guarded by its create
// revision when that is known and etcd answers; otherwise its key is retired
// (see stray_entries.h), which removes it, and any create of it that lands
// later, in the background. Never throws; the key may be used again only
// when the delete was answered.
void remove_entry(LockContext& context, const QueueWait::Leftover& leftover, std::int64_t lease_id) noexcept;

}  // namespace etcdlock::detail
