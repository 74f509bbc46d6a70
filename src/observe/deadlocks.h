// The deadlock view: from one read of a prefix's queues to the cycles of the
// wait-for graph between leases (see etcdlock/deadlock.h for what a cycle
// means). A pure function, so that it is tested without etcd.
//
// How: an entry holds or waits by its queue's admission rules (admission.h).
// Leases that wait for nothing go first, and with them their entries; then,
// over and over, each lease all of whose waiting entries would be admitted
// once those entries are gone (its own entries never count against it). The
// leases left are stuck; among them a lease waits for the leases of the
// entries ahead that still hold it back, and each strongly connected group
// of two or more is reported as one cycle: the shortest through its lowest
// lease. A key without a lease (0) never goes and never waits.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "etcdlock/deadlock.h"

namespace etcdlock::detail {

// One key of the read, as etcd gave it.
struct PrefixEntry {
  std::string_view key;
  std::string_view value;
  std::int64_t lease = 0;
  std::int64_t create_revision = 0;
};

// The cycles among `entries`, keys under `prefix` in any order (keys that are
// not queue entries, such as inboxes, are left out). Deterministic: each
// cycle starts at its lowest lease, and cycles come in the order of those.
std::vector<Deadlock> find_deadlocks(std::string_view prefix, std::span<const PrefixEntry> entries);

}  // namespace etcdlock::detail
