// What a manager counts of its sessions, across the sessions it replaces.
#pragma once

#include <atomic>
#include <cstdint>

#include "base/histogram.h"

namespace etcdlock::detail {

struct SessionCounters {
  AtomicHistogram keepalive_rtt;  // from a renewal's send to its acknowledgement
  std::atomic<std::uint64_t> renewals_failed{0};
};

}  // namespace etcdlock::detail
