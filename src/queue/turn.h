// Turn: which holder of this process may use a name's entry in etcd: the
// thread that acquires and then holds a lock, or campaigns for and then leads
// an election, or an asynchronous acquisition and the hold object it yields.
// Holders of one process share the lease, hence the key, so etcd cannot tell
// them apart; the turn excludes them locally.
//
// Waiters are served first come, first served, threads and asynchronous
// waiters alike: a thread blocks, an asynchronous waiter leaves a callback
// that is called when its turn comes (it must not block: it posts work).
//
// The turn passes only when its owner gives it back. An entry that an owner
// left behind without knowing whether it is gone does not hold the turn up:
// its key is retired (stray_entries.h), and the next attempt takes another.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>

#include "base/mutex.h"
#include "queue/primitive_context.h"

namespace etcdlock::detail {

// Thread-safe. Its mutex is taken after its owner's, never before.
class Turn {
 public:
  // `kind` ("lock", a literal) and `name` name the lock or election in
  // messages; both, and `context`, outlive the turn.
  Turn(const PrimitiveContext& context, std::string_view kind, const std::string& name);

  // Waits until the turn is the calling thread's; true when it has it now,
  // false when `wait` is false and it is busy or others wait, or at the
  // deadline. Throws Error: cancelled, closed.
  bool take(SteadyTime deadline, const std::stop_token& cancel, bool wait);

  // An asynchronous waiter: called with the turn given to it; returns false
  // when the waiter is gone, and the turn passes on.
  using Grant = std::function<bool()>;
  // True when the turn was free and nobody waited: the caller has it now.
  // Otherwise `grant` is queued and called once the turn is the waiter's;
  // the returned ticket withdraws it.
  struct Ticket {
    bool granted = false;
    std::uint64_t id = 0;  // when queued
  };
  Ticket take_async(Grant grant);
  // Withdraws a queued asynchronous waiter: false when it is not queued any
  // more (granted, or never queued), and the caller may own the turn.
  bool withdraw(std::uint64_t id);

  // By the owner: the turn passes to the next waiter, or is free.
  void give_back();
  bool owned_by_this_thread() const;

 private:
  struct Waiter {
    std::uint64_t id = 0;
    std::thread::id thread;                        // a blocked thread, or
    Grant grant;                                   // an asynchronous waiter
    bool granted = false;                          // a thread's: the turn is its now
    std::condition_variable_any* woken = nullptr;  // a thread's, on its stack while it waits
  };
  // Passes the free turn to the first waiter still there; the grants to call
  // once mu_ is released go to `granted`.
  void pass_on(std::vector<Grant>& granted) ETCDLOCK_REQUIRES(mu_);
  // "lock \"jobs\"", for messages.
  std::string what() const;

  const PrimitiveContext& context_;
  const std::string_view kind_;
  const std::string& name_;
  mutable Mutex mu_;
  bool busy_ ETCDLOCK_GUARDED_BY(mu_) = false;
  std::thread::id owner_ ETCDLOCK_GUARDED_BY(mu_);  // when a thread owns it
  // A list, not a deque: libstdc++'s deque allocates 576 bytes when it is
  // constructed, and every lock name has a turn, nearly always empty.
  std::list<std::shared_ptr<Waiter>> waiters_ ETCDLOCK_GUARDED_BY(mu_);
  std::uint64_t next_id_ ETCDLOCK_GUARDED_BY(mu_) = 1;
};

}  // namespace etcdlock::detail
