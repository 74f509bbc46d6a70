// Turn: which thread of this process may use a name's entry in etcd: the
// thread that acquires and then holds a lock, or campaigns for and then leads
// an election. Threads of one process share the lease, hence the key, so etcd
// cannot tell them apart; the turn excludes them locally.
//
// The turn passes only when its owner gives it back. An entry that an owner
// left behind without knowing whether it is gone does not hold the turn up:
// its key is retired (stray_entries.h), and the next attempt takes another.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <stop_token>
#include <string>
#include <thread>

#include "base/mutex.h"
#include "queue/primitive_context.h"

namespace etcdlock::detail {

// Thread-safe. Its mutex is taken after its owner's, never before.
class Turn {
 public:
  // `what` names the lock or election in messages: "lock \"jobs\"".
  Turn(std::shared_ptr<PrimitiveContext> context, std::string what);

  // Waits until the turn is free; true when the calling thread has it now,
  // false when `wait` is false and it is busy, or at the deadline. Throws
  // Error: cancelled, closed.
  bool take(SteadyTime deadline, const std::stop_token& cancel, bool wait);
  // By the owner: the turn is free again.
  void give_back();
  bool owned_by_this_thread() const;

 private:
  const std::shared_ptr<PrimitiveContext> context_;
  const std::string what_;
  mutable Mutex mu_;
  std::condition_variable_any changed_;
  std::thread::id owner_ ETCDLOCK_GUARDED_BY(mu_);
};

}  // namespace etcdlock::detail
