// StrayEntries: keys of this manager's queue entries that nothing of it
// claims any more, but that may still be in etcd, or appear there later.
//
// Two faults leave such keys. A delete whose reply was lost (an unlock, a
// resign, a permit given back while etcd hung) may or may not have happened.
// Worse, a create whose reply was lost may be applied long after the attempt
// that sent it gave up: a member that was frozen forwards it when it thaws.
// Either way the entry, on a lease this process keeps alive, would block
// everyone queued behind it for as long as the process lives.
//
// So such a key is retired: no attempt of this manager uses it again (a new
// attempt takes a fresh key, see QueueWait), and a watch on it removes the
// entry now and whatever create of it lands later, for as long as its lease
// lives. Since nothing of ours will ever create the key again, any entry
// found under it on that lease is a stray.
//
// Retiring costs a watch and a read per key, and happens only after a fault.
// Nothing is written outside the queue itself: no key of etcdlock's lies
// where etcd's Go Mutex or etcdctl would count it as a waiter.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/logger.h"
#include "base/mutex.h"
#include "base/worker.h"
#include "etcd/client.h"
#include "etcd/watch_hub.h"
#include "keys/queue_requests.h"
#include "session/session_source.h"

namespace etcdlock::detail {

// Thread-safe. Its requests are asynchronous and sent from the worker; their
// replies arrive on gRPC's callback threads, which only read what came and
// post what follows (a removal, a note, a retry) to the worker, since a send
// may block (it may fetch a token first). None is made under its mutex.
class StrayEntries {
 public:
  StrayEntries(const etcd::Client& client, etcd::WatchHub& watches, const Logger& log, SessionSource& sessions,
               Worker& worker);
  // close().
  ~StrayEntries();
  StrayEntries(const StrayEntries&) = delete;
  StrayEntries& operator=(const StrayEntries&) = delete;

  // No attempt of this manager will use `key`, an entry key on lease
  // `lease_id`, again: remove what is there and what comes, while the lease
  // lives. `create_revision`, when known (the entry of a hold whose release
  // went unanswered, 0 otherwise), is the entry that was ours: once it is
  // found gone, a lock's waiter that was behind it and holds now is told (see
  // note_first_behind), as a release would have. So is the one behind any
  // entry the guard removes. Idempotent; never blocks. A key guarded already
  // with no entry known to be ours takes `create_revision` and is checked
  // again.
  void retire(const std::string& key, std::int64_t lease_id, std::int64_t create_revision = 0);
  // `key` was retired: an attempt must take another one.
  bool retired(const std::string& key) const;
  // How many keys are guarded now (for tests and metrics).
  std::size_t size() const;
  // The keys guarded now, each with the create revision of the entry that
  // was ours under it: the one retire() was given or, failing that, the
  // first the guard set out to remove (0 while neither is known).
  std::vector<std::pair<std::string, std::int64_t>> keys_and_ours() const;

  // Stops every guard (the manager closes: its lease is revoked, which takes
  // the entries). Idempotent.
  void close();

 private:
  struct Guard {
    std::int64_t lease_id = 0;
    std::int64_t watch = 0;          // its handle in the hub
    std::int64_t ours_revision = 0;  // see keys_and_ours()
  };
  class GuardWatch;

  // Reads `key`, with the queue's first entry in the same revision: removes
  // the key if it is an entry on the guard's lease; if it is gone and the
  // guard knows which entry was ours, tells the first entry if that was
  // behind ours.
  void check(const std::string& key);
  // Deletes `key` while it is the entry created at `create_revision`, and
  // tells the entry behind it if that holds now; retried while etcd cannot
  // be reached and the guard stands.
  void remove(const std::string& key, std::int64_t create_revision);
  // Asks etcd about the leases of guards that this manager no longer keeps
  // alive, and forgets the guards of those it no longer has.
  void sweep();
  void forget(std::int64_t lease_id);
  // The guard of `key`, if it stands (not forgotten, not closed): copied
  // under mu_ in one look, so that one reply sees one guard.
  std::optional<Guard> guard_of(const std::string& key) const;
  // Tells the first entry of `queue` (as read in `first`) that it holds, if
  // it is a lock's waiter behind the entry created at `ours`: from the
  // worker, with the reply's data copied.
  void post_note(const QueueDir& queue, const pb::RangeResponse& first, std::int64_t ours);
  bool lease_is_current(std::int64_t lease_id) const;

  const etcd::Client& client_;
  etcd::WatchHub& watches_;
  const Logger& log_;
  SessionSource& sessions_;
  Worker& worker_;

  mutable Mutex mu_;
  std::map<std::string, Guard> guards_ ETCDLOCK_GUARDED_BY(mu_);  // by key
  bool sweep_posted_ ETCDLOCK_GUARDED_BY(mu_) = false;
  bool closed_ ETCDLOCK_GUARDED_BY(mu_) = false;
};

}  // namespace etcdlock::detail
