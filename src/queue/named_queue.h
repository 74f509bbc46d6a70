// NamedQueue: what every primitive on one name starts from: the manager's
// services, the name, its counters and the directory of its queue in etcd.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "keys/key_layout.h"
#include "keys/queue_requests.h"
#include "queue/lock_context.h"
#include "queue/lock_metrics.h"

namespace etcdlock::detail {

struct NamedQueue {
  // `kind` labels the counters: "lock", "election", "semaphore", "shared lock".
  NamedQueue(std::shared_ptr<LockContext> services, std::string_view kind, std::string name_in_prefix)
      : context(std::move(services)),
        name(std::move(name_in_prefix)),
        counters(context->lock_counters().counters(kind, name)),
        queue{queue_dir(context->prefix(), name), prefix_range_end(queue_dir(context->prefix(), name))} {}

  const std::shared_ptr<LockContext> context;
  const std::string name;
  const std::shared_ptr<LockCounters> counters;  // null when metrics are off
  const QueueDir queue;
};

}  // namespace etcdlock::detail
