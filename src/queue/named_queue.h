// NamedQueue: what every primitive on one name starts from: the manager's
// services, the name, its counters and the directory of its queue in etcd.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "keys/key_layout.h"
#include "keys/queue_requests.h"
#include "queue/primitive_context.h"
#include "queue/primitive_metrics.h"

namespace etcdlock::detail {

struct NamedQueue {
  // `kind` labels the counters: "lock", "election", "semaphore", "shared lock".
  NamedQueue(std::shared_ptr<PrimitiveContext> services, std::string_view kind, std::string name_in_prefix)
      : context(std::move(services)),
        name(std::move(name_in_prefix)),
        counters(context->primitive_counters().counters(kind, name)),
        queue{queue_dir(context->prefix(), name)} {}

  const std::shared_ptr<PrimitiveContext> context;
  const std::string name;
  const std::shared_ptr<PrimitiveCounters> counters;  // null when metrics are off
  const QueueDir queue;
  // Lives as long as the primitive, destructor included: a destructor that
  // releases what was never unlocked finishes before this goes, and the
  // registry makes no second primitive for the name until then.
  const std::shared_ptr<const void> lifetime = std::make_shared<char>();
};

}  // namespace etcdlock::detail
