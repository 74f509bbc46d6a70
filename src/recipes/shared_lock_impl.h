// SharedLockImpl: the state behind one named SharedLock: each thread's hold,
// on which side, how deep.
//
// Every hold is an entry of its own, "<lease id>-<n>", whose value says its
// side; writers are admitted with nothing ahead, readers with no writer ahead
// (admission.h). Keys are never reused, so the threads of one process need no
// turn: etcd orders all of them, fairly.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>

#include "base/mutex.h"
#include "etcdlock/options.h"
#include "keys/queue_requests.h"
#include "queue/async_acquisition.h"
#include "queue/hold.h"
#include "queue/named_queue.h"
#include "queue/primitive_context.h"
#include "queue/primitive_metrics.h"
#include "queue/queue_wait.h"

namespace etcdlock::detail {

class SharedLockImpl;

// What a SharedLockHold owns: one side's entry, not a thread's.
struct AsyncSharedHold {
  std::shared_ptr<SharedLockImpl> lock;
  std::shared_ptr<Hold> hold;
  bool in_doubt = false;  // its key is retired at release
  bool writing = false;
  std::atomic<bool> released{false};
};

// Thread-safe.
class SharedLockImpl : public std::enable_shared_from_this<SharedLockImpl> {
 public:
  // Read or write; never none.
  using Side = HolderValue::Side;

  SharedLockImpl(std::shared_ptr<PrimitiveContext> context, std::string name, LockOptions options);
  // Releases holds that were never unlocked.
  ~SharedLockImpl();

  // True when this thread holds `side` now; false when `mode` gave up or the
  // deadline passed. Throws Error (see SharedLock).
  bool acquire(Side side, SteadyTime deadline, std::stop_token cancel, QueueWait::Mode mode) ETCDLOCK_EXCLUDES(mu_);
  void release(Side side, std::error_code& ec) noexcept ETCDLOCK_EXCLUDES(mu_);

  // Asynchronous acquisition of `side` (async_acquisition.h): an entry of its
  // own, no thread's; `done` is called once, on a notifier thread.
  using AsyncDone = std::function<void(std::error_code, std::shared_ptr<AsyncSharedHold>)>;
  void async_acquire(Side side, SteadyTime deadline, std::stop_token cancel, AsyncDone done);
  // Ends a hold that async_acquire() gave, from any thread.
  void release(AsyncSharedHold& hold, std::error_code& ec) noexcept;
  // Logs a warning: `call` by a thread that does not hold that side, which
  // the throwing-free unlock() and unlock_shared() cannot report otherwise.
  void warn_not_held(std::string_view call) const noexcept;

  bool held_by_this_thread(Side side) const;
  std::stop_token lost_token() const;
  std::int64_t fencing_token() const;
  std::optional<pb::TxnRequest> guarded_txn() const;

  const std::string& name() const { return named_.name; }
  std::weak_ptr<const void> lifetime() const { return named_.lifetime; }
  const LockOptions& options() const { return options_; }
  PrimitiveContext& context() { return *named_.context; }

 private:
  struct ThreadHold {
    Side side = Side::read;
    int depth = 0;
    std::shared_ptr<Hold> hold;
    bool in_doubt = false;  // its key is retired at release
  };

  // The thread's write hold becomes a read hold, in place. When etcd does
  // not answer, the hold is lost (see the .cc) and Error(unavailable) thrown.
  void downgrade(ThreadHold& held) ETCDLOCK_REQUIRES(mu_);
  // Deletes a hold's entry (Hold::give_up).
  void give_up(Hold& hold, bool in_doubt, std::error_code& ec) noexcept ETCDLOCK_EXCLUDES(mu_);

  const NamedQueue named_;
  const LockOptions options_;

  // Lock order and etcd: see base/mutex.h.
  mutable Mutex mu_;
  std::map<std::thread::id, ThreadHold> holds_ ETCDLOCK_GUARDED_BY(mu_);
};

}  // namespace etcdlock::detail
