// Turn: which thread of this process may use a name's entry in etcd: the
// thread that acquires and then holds a lock, or campaigns for and then leads
// an election. Threads of one process share the lease, hence the key, so etcd
// cannot tell them apart; the turn excludes them locally.
//
// The turn passes only when its owner gives it back, and never while an entry
// left under the name could still be in etcd (its removal could not reach
// etcd): a new attempt would find that entry under the same key and take it
// for its own. The turn also keeps the name's Fence (fence.h).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <stop_token>
#include <string>
#include <thread>

#include "fence.h"
#include "lock_context.h"
#include "mutex.h"
#include "queue_requests.h"
#include "queue_wait.h"

namespace etcdlock::detail {

// Thread-safe. Its mutex is taken after its owner's, never before.
class Turn {
 public:
  // `what` names the lock or election in messages: "lock \"jobs\"".
  Turn(std::shared_ptr<LockContext> context, std::string what, std::string dir, std::string fence_key_base);

  // Waits until the turn is free; true when the calling thread has it now,
  // false when `wait` is false and it is busy, or at the deadline. Throws
  // Error: cancelled, closed.
  bool take(SteadyTime deadline, const std::stop_token& cancel, bool wait);
  // By the owner: the turn is free again (once no removal is pending).
  void give_back();
  bool owned_by_this_thread() const;

  Fence& fence() { return fence_; }

  // By the owner: removes an entry it leaves behind, if it is still the same
  // one; one whose creation is in doubt, by closing the fence. If etcd cannot
  // be reached, the removal goes on in the background, and the turn waits
  // for it.
  void remove_entry(const QueueWait::Leftover& leftover, std::int64_t lease_id);

 private:
  // Shared with the background removal's completion, which may come after
  // the Turn is gone.
  struct State {
    Mutex mu;
    std::condition_variable_any changed;
    std::thread::id owner ETCDLOCK_GUARDED_BY(mu);
    bool removal_pending ETCDLOCK_GUARDED_BY(mu) = false;
  };

  const std::shared_ptr<LockContext> context_;
  const std::string what_;
  const std::string dir_;
  Fence fence_;
  const std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace etcdlock::detail
