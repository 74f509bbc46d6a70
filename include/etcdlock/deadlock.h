// Deadlocks between managers, as an onlooker sees them in one read of the
// queues: LockManager::deadlocks().
//
// Locks taken one by one can deadlock across processes: A holds X and waits
// for Y while B holds Y and waits for X. Every entry of a manager carries its
// lease, so one read of the prefix shows who waits for whom: an entry that
// waits is held back by the entries ahead of it that its admission rule
// counts (every entry ahead for a lock, an election or a writer; for a
// semaphore, the entries ahead while they fill its limit; the writers ahead
// for a reader), and its lease waits for theirs. A deadlock is a cycle of
// that wait-for graph between leases that nothing outside it can break: a
// lease that waits only for leases that will let go (they wait for nothing,
// or only for leases that will) is not part of one. A semaphore waiter held back by a cycle member
// and by a holder outside it is not stuck: that holder's release admits it.
//
// What a cycle means. The graph's nodes are leases, and all threads of a
// manager share its lease, so two independent threads of one manager (one
// holding X, another waiting for Y) look like one node that holds X while
// it waits for Y. A reported cycle is a cycle between managers: a deadlock
// for as long as each member keeps its holds while it waits, which is so
// when one thread of each took the locks one by one, and not when a thread
// that holds will release without waiting for the others. It ends when a
// member gives up (try_lock_for's timeout, a cancelled wait), unlocks, or
// loses its lease. A manager's own entries never hold back its others here.
//
// Entries of etcdctl lock and Go's Mutex store no etcdlock value: their owner
// is "unknown" and they count as exclusive, but they carry a lease, so they
// take part in cycles as nodes of their own. A key without a lease never
// goes, and never waits: what waits behind it is stuck but in no cycle.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace etcdlock {

// One member of a cycle: a lease that waits for the next member's.
struct DeadlockMember {
  std::int64_t lease_id = 0;
  // From its entry in `waits_for`: as its manager was told, or "unknown"
  // for entries that store no etcdlock value (etcdctl lock, Go's Mutex).
  std::string owner;
  // The name where it stands ahead of the previous member, which waits for
  // it there (the previous member's `waits_for`).
  std::string holds;
  // Whether its entry in `holds` is admitted: true for a holder; false when
  // it stands ahead there as a waiter itself.
  bool holding = false;
  // The name whose queue it waits in, behind an entry of the next member.
  std::string waits_for;
};

// A cycle: members[i] waits for members[i + 1], and the last for the first.
struct Deadlock {
  std::vector<DeadlockMember> members;
};

}  // namespace etcdlock
