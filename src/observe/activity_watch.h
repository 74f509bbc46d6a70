// ActivityWatch: follows the queues of every lock whose name starts with a
// given prefix, and reports each entry that joins, holds and goes
// (LockManager::watch).
//
// As LeaderObserver does for one election, it follows the range as CatchUp
// says (catch_up.h): a read, then one watch from the revision after it, and a
// read again after a watch gap, which reports what changed meanwhile. Which
// entries hold is worked out as an onlooker sees it (holding_entries() in
// admission.h), so locks, elections, semaphores and read-write locks are all
// reported rightly, whoever queued (etcdctl and Go included).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "base/strand.h"
#include "etcd/watch_hub.h"
#include "etcdlock/lock_event.h"
#include "observe/catch_up.h"
#include "queue/primitive_context.h"

namespace etcdlock::detail {

// Thread-safe.
class ActivityWatch : public std::enable_shared_from_this<ActivityWatch> {
 public:
  // `name_prefix` is validated.
  ActivityWatch(std::shared_ptr<PrimitiveContext> context, std::string_view name_prefix, LockListener listener);
  ~ActivityWatch();

  // Reads the queues and starts the watch. Throws Error(errc::unavailable).
  void start();
  // Ends the calls: none runs after this returns, unless it is called from
  // one. Idempotent.
  void stop() noexcept;

 private:
  class Relay;
  struct Delivery;
  struct Entry {
    std::string key;
    std::string value;
    std::int64_t lease = 0;
    std::int64_t revision = 0;  // create revision
    bool holds = false;
  };
  using Queue = std::map<std::int64_t, Entry>;  // by create revision

  // Reads every queue; after a gap, reports the difference, then applies the
  // events held back meanwhile.
  void read();
  void on_events(std::span<const etcd::WatchEvent> events);
  void on_gap();
  void read_later();

  // Applies what a read after a gap found (`now`, at `revision`): reports
  // what differs from what was known.
  bool report_difference(std::map<std::string, Queue> now, std::int64_t revision) ETCDLOCK_REQUIRES(mu_);

  // Each of these applies a change at `revision` and queues the calls it
  // makes; true when lookups_.run_queued() is due, outside mu_.
  bool apply(const etcd::WatchEvent& event) ETCDLOCK_REQUIRES(mu_);
  bool put(const std::string& name, Entry entry, std::int64_t revision) ETCDLOCK_REQUIRES(mu_);
  bool remove(const std::string& key, std::int64_t revision) ETCDLOCK_REQUIRES(mu_);
  // As remove(), without working out again who holds: returns the entry's
  // lock name, if it was known; `run` as the others return.
  std::optional<std::string> drop(const std::string& key, std::int64_t revision, bool& run) ETCDLOCK_REQUIRES(mu_);
  // Works out again which entries of `name` hold, and reports those that
  // began to (unless `report_changes` is false: the first read reports nothing).
  bool admit(const std::string& name, std::int64_t revision, bool report_changes = true) ETCDLOCK_REQUIRES(mu_);
  // admit() for each name that `name` extends ("a" for "a/b"): a change of
  // a longer name's entries may admit theirs.
  bool admit_enclosing(const std::string& name, std::int64_t revision) ETCDLOCK_REQUIRES(mu_);
  bool report(LockEvent::Kind kind, const std::string& name, const Entry& entry, std::int64_t revision)
      ETCDLOCK_REQUIRES(mu_);

  // The lock name in `key`, if it is a queue entry of a watched lock.
  std::optional<std::string_view> name_of(std::string_view key) const;

  const std::shared_ptr<PrimitiveContext> context_;
  const std::string name_prefix_;
  const std::string from_;  // "<prefix>/<name prefix>"
  const std::string end_;
  // Shared with the queued calls, which may outlive this object (a listener
  // may end its own subscription).
  const std::shared_ptr<Delivery> delivery_;
  Strand lookups_;  // the first stage of a report; the listener's is in Delivery

  Mutex mu_;
  std::map<std::string, Queue> queues_ ETCDLOCK_GUARDED_BY(mu_);  // by name
  std::map<std::string, std::pair<std::string, std::int64_t>> entries_
      ETCDLOCK_GUARDED_BY(mu_);  // key -> name, revision
  CatchUp catch_up_ ETCDLOCK_GUARDED_BY(mu_);
  bool read_once_ ETCDLOCK_GUARDED_BY(mu_) = false;
  bool stopped_ ETCDLOCK_GUARDED_BY(mu_) = false;
  std::int64_t watch_ ETCDLOCK_GUARDED_BY(mu_) = 0;
};

}  // namespace etcdlock::detail
