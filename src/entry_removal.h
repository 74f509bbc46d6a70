// Removing an entry that a queue attempt or a hold leaves behind.
#pragma once

#include <cstdint>
#include <functional>

#include "fence.h"
#include "lock_context.h"
#include "queue_wait.h"

namespace etcdlock::detail {

// Removes `leftover`, on lease `lease_id`, if it is still the same entry; one
// whose creation is in doubt, by closing the fence. True when done now;
// false when etcd could not be reached and the removal goes on in the
// background, after which `done` is called (on the worker's thread).
bool remove_entry(LockContext& context, Fence& fence, const QueueWait::Leftover& leftover, std::int64_t lease_id,
                  std::function<void()> done);

}  // namespace etcdlock::detail
