// Hold: one hold of a lock in etcd, from the moment its entry is first in the
// queue until it is released or lost.
//
// A hold ends involuntarily when its session is lost (the lease expired, was
// revoked, or passed its local deadline), when its key is deleted (a force
// unlock, `etcdctl del`), or when the manager closes. It learns of each by
// itself: the session's and the manager's stop tokens, and a watch on its own
// key. That watch starts only once the hold has lasted kWatchDelay: a short
// hold then costs no watch, and no event when its own release deletes the key.
// A read of the key once the watch is in place covers the time before it, and
// a hold released before that learns of a delete from its release, which
// compares the key's create revision. (A delete by someone else lets the next
// holder in at once; the holder learns of it after the fact, within about
// kWatchDelay plus a read, or a watch event's delivery time once watched.)
//
// Loss is signalled once, by requesting the hold's stop token on the
// notifier's thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <system_error>

#include "base/mutex.h"
#include "keys/queue_requests.h"
#include "queue/primitive_context.h"
#include "queue/primitive_metrics.h"
#include "session/session.h"

namespace etcdlock::detail {

// Thread-safe.
class Hold : public std::enable_shared_from_this<Hold> {
 public:
  static constexpr std::chrono::milliseconds kWatchDelay{50};

  // A hold of `entry` on `session`'s lease, first in its queue; `kind`
  // ("lock", "leadership") and `name` are for logs, `counters` (may be null)
  // count its loss and how long it lasted; `successor` is the entry right
  // behind it when its acquisition read one (see hand_over.h). Call start()
  // next.
  Hold(std::shared_ptr<PrimitiveContext> context, std::shared_ptr<Session> session, QueueEntry entry, std::string kind,
       std::string name, std::shared_ptr<PrimitiveCounters> counters,
       std::optional<Successor> successor = std::nullopt);
  ~Hold();
  Hold(const Hold&) = delete;
  Hold& operator=(const Hold&) = delete;

  // Begins to follow the session, the manager and, after kWatchDelay, the key.
  // When either has ended already, the hold is lost at once.
  void start();
  // The hold is over (released, or its loss acknowledged by unlock): no
  // further loss is signalled. Idempotent; not to be called under a mutex
  // that a loss takes (none of etcdlock's). `Closing::follow` keeps the
  // manager's close followed: a release about to be sent (give_up) still
  // registers its queue for close()'s notes if the close begins meanwhile,
  // since the close's revoke may take the entry before the release's Txn
  // (which then finds it gone and notes no one). give_up() ends that.
  enum class Closing { follow, ignore };
  void finish(Closing closing = Closing::ignore);

  const QueueEntry& entry() const { return entry_; }
  // The entry that was right behind this one when the hold began, if it
  // can take a note; null if none was known.
  const Successor* successor() const { return successor_.get(); }
  std::int64_t lease_id() const { return session_->lease_id(); }
  bool session_alive() const { return session_->alive(); }
  std::stop_token lost_token() const { return lost_source_.get_token(); }
  bool lost() const { return lost_.load(); }

  // Marks the hold lost, once: logs why and signals the application. Ignored
  // after finish(), unless `even_if_finished` (a release that found the key
  // gone, or could not learn whether it went: the application learns now).
  void lose(LossCause cause, bool even_if_finished = false);

  // The owner gives the hold up (an unlock, a resign, a permit given back):
  // finish(Closing::follow), then `remove_entry` deletes the entry in etcd, returning
  // whether it was still there, or throwing Error when etcd did not answer.
  // From the moment this is called nothing claims the hold, whatever etcd
  // answers:
  //   - deleted: done. `in_doubt` (a create of the entry went unanswered and
  //     may still land) retires the key (stray_entries.h);
  //   - already gone, or lost before: errc::lock_expired, and the loss is
  //     signalled if it was not yet; an entry left by a lost hold is removed;
  //   - unknown (no reply): errc::unavailable. The entry may still stand, or
  //     be gone and the next holder in: the hold counts as lost (its token
  //     fires, cause `unconfirmed`) and the key is retired, which removes the
  //     entry in the background;
  //   - refused (say, errc::permission_denied): that code. The entry still
  //     stands, so no one else is in; it is removed in the background.
  // The notifier requests the lost token; the caller does it at once with
  // signal_loss_now() once it has given back what it holds locally (the
  // turn). Never throws.
  void give_up(const std::function<bool()>& remove_entry, bool in_doubt, std::error_code& ec) noexcept;

  // Requests the lost token now, on the caller's thread, if the hold is lost
  // and the notifier has not done so yet: an unlock that reports the loss
  // returns with the token requested. Loss callbacks may run here and may
  // call back into the library, so the caller holds nothing when it calls
  // this: no mutex, no turn (a callback that locks again would wait for its
  // own thread), and no destructor of the primitive (the registry makes no
  // new state for the name until that destructor ends).
  void signal_loss_now();

 private:
  class KeyWatch;
  // Our entry goes with the lease that the closing manager revokes: the
  // entry behind it gets close()'s note (PrimitiveContext::shut_down).
  void hand_over_on_close() noexcept;
  // give_up() between its two finish() calls.
  void release_entry(const std::function<bool()>& remove_entry, bool in_doubt, std::error_code& ec) noexcept;
  void watch_key();
  void check_key();

  const std::shared_ptr<PrimitiveContext> context_;
  const std::shared_ptr<Session> session_;
  const QueueEntry entry_;
  // On the heap: most holds have none, and an optional would keep its room
  // in every hold.
  const std::unique_ptr<const Successor> successor_;
  const std::string kind_;
  const std::string name_;
  const std::shared_ptr<PrimitiveCounters> counters_;
  const SteadyTime started_ = SteadyClock::now();
  std::stop_source lost_source_;
  std::atomic<bool> lost_{false};
  std::atomic<bool> finished_{false};

  Mutex mu_;  // taken by start, finish and the worker's tasks, never by a loss
  // Runs `act` on the hold while it exists. A function pointer and a weak
  // reference fit in the callback itself; a std::function of them would
  // allocate, once per callback of every hold.
  struct OnHold {
    std::weak_ptr<Hold> hold;
    void (*act)(Hold&);
    void operator()() const;
  };
  using LossCallback = std::stop_callback<OnHold>;
  std::unique_ptr<LossCallback> on_session_lost_ ETCDLOCK_GUARDED_BY(mu_);
  std::unique_ptr<LossCallback> on_closed_ ETCDLOCK_GUARDED_BY(mu_);
  std::uint64_t watch_task_ ETCDLOCK_GUARDED_BY(mu_) = 0;
  std::int64_t watch_ ETCDLOCK_GUARDED_BY(mu_) = 0;
};

}  // namespace etcdlock::detail
