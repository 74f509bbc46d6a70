// MultiLockImpl: the state behind one MultiLock: the names' LockImpls (whose
// turns it takes, in the order of the sorted names), the hold (a MultiHold)
// and how deep its owner holds it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <system_error>
#include <vector>

#include "base/mutex.h"
#include "etcdlock/options.h"
#include "queue/multi_acquisition.h"
#include "queue/multi_hold.h"
#include "queue/queue_wait.h"
#include "recipes/lock_impl.h"

namespace etcdlock::detail {

class MultiLockImpl;

// What a MultiLockHold owns: a hold of the multi-lock, its names' turns taken.
struct AsyncMultiLockHold {
  std::shared_ptr<MultiLockImpl> lock;
  std::shared_ptr<MultiHold> hold;
  std::atomic<bool> released{false};
};

// Thread-safe.
class MultiLockImpl : public std::enable_shared_from_this<MultiLockImpl> {
 public:
  using Mode = QueueWait::Mode;

  // `locks`: one per name, sorted by name, no two alike.
  MultiLockImpl(std::shared_ptr<PrimitiveContext> context, std::vector<std::shared_ptr<LockImpl>> locks,
                LockOptions options);
  // Releases a hold that was never unlocked.
  ~MultiLockImpl();

  // As LockImpl::acquire.
  bool acquire(SteadyTime deadline, std::stop_token cancel, Mode mode) ETCDLOCK_EXCLUDES(mu_);
  void release(std::error_code& ec) noexcept ETCDLOCK_EXCLUDES(mu_);
  void warn_not_held(std::string_view call) const noexcept;

  // Asynchronous acquisition (async_acquisition.h over a MultiAcquisition):
  // the names' turns taken in their order, then the entries; `done` is
  // called once, on a notifier thread, with the hold or an error.
  using AsyncDone = std::function<void(std::error_code, std::shared_ptr<AsyncMultiLockHold>)>;
  void async_acquire(SteadyTime deadline, std::stop_token cancel, AsyncDone done);
  // Ends a hold that async_acquire() gave: as release(), from any thread.
  void release(AsyncMultiLockHold& state, std::error_code& ec) noexcept ETCDLOCK_EXCLUDES(mu_);
  // Logs a warning: an asynchronous acquisition's handler threw `what`.
  void warn_handler_threw(std::string_view what) const noexcept;
  // The hold `state` is this multi-lock's current one, not lost.
  bool holds(const AsyncMultiLockHold& state) const ETCDLOCK_EXCLUDES(mu_);
  // As guarded_put/guarded_delete, for the hold `state`.
  bool guarded_put(const AsyncMultiLockHold& state, std::string_view key, std::string_view value);
  bool guarded_delete(const AsyncMultiLockHold& state, std::string_view key);

  bool held() const ETCDLOCK_EXCLUDES(mu_);
  bool held_by_this_thread() const ETCDLOCK_EXCLUDES(mu_);
  const std::vector<std::string>& names() const { return names_; }
  std::string description() const;
  std::weak_ptr<const void> lifetime() const { return lifetime_; }
  const LockOptions& options() const { return options_; }
  std::chrono::milliseconds command_timeout() const { return context_->client().command_timeout(); }
  std::vector<std::string> keys() const ETCDLOCK_EXCLUDES(mu_);
  std::stop_token lost_token() const ETCDLOCK_EXCLUDES(mu_);
  bool lost() const ETCDLOCK_EXCLUDES(mu_);
  std::int64_t fencing_token(std::string_view name) const ETCDLOCK_EXCLUDES(mu_);
  // Throws Error(errc::invalid_argument) unless `name` is one of names().
  void check_name(std::string_view name) const;
  std::int64_t fencing_token() const ETCDLOCK_EXCLUDES(mu_);
  bool guarded_put(std::string_view key, std::string_view value) ETCDLOCK_EXCLUDES(mu_);
  bool guarded_delete(std::string_view key) ETCDLOCK_EXCLUDES(mu_);

 private:
  std::shared_ptr<MultiHold> hold() const ETCDLOCK_EXCLUDES(mu_);
  bool owns_every_turn() const;
  // Takes the names' turns in order; false (holding none) when one is busy
  // and `mode` does not wait, or at the deadline.
  bool take_turns(SteadyTime deadline, const std::stop_token& cancel, Mode mode);
  void give_back_turns() noexcept;
  // The queues of the names, in order, for an acquisition.
  std::vector<MultiAcquisition::Queue> queues() const;
  // The hold's turns are this multi-lock's now: the hold becomes its own.
  void adopt(std::shared_ptr<MultiHold> hold, bool waited) ETCDLOCK_EXCLUDES(mu_);
  // The last release's work: the entries deleted, the turns given back, a
  // loss signalled.
  void give_up(const std::shared_ptr<MultiHold>& hold, bool expect_successors, std::error_code& ec) noexcept
      ETCDLOCK_EXCLUDES(mu_);
  bool acquire_in_etcd(SteadyTime deadline, const std::stop_token& cancel, Mode mode) ETCDLOCK_EXCLUDES(mu_);
  // A Txn that compares every entry of `hold`; nullopt when it is null or lost.
  static std::optional<pb::TxnRequest> guarded_txn(const std::shared_ptr<MultiHold>& hold);
  // A MultiHold over `holds`, one per name, in order.
  std::shared_ptr<MultiHold> make_hold(std::vector<std::shared_ptr<Hold>> holds, bool in_doubt) const;

  const std::shared_ptr<PrimitiveContext> context_;
  const std::vector<std::shared_ptr<LockImpl>> locks_;
  const std::vector<std::string> names_;
  const LockOptions options_;
  const std::shared_ptr<const void> lifetime_ = std::make_shared<char>();

  // Lock order and etcd: see base/mutex.h.
  mutable Mutex mu_;
  std::shared_ptr<MultiHold> hold_ ETCDLOCK_GUARDED_BY(mu_);  // the turns' owner's hold
  int depth_ ETCDLOCK_GUARDED_BY(mu_) = 0;                    // the owner's hold count
  bool last_hold_lost_ ETCDLOCK_GUARDED_BY(mu_) = false;
  std::vector<std::string> last_keys_ ETCDLOCK_GUARDED_BY(mu_);
  // Successors are likely (the last acquisition waited, or the last release
  // found one): the release reads the queues' heads first, so that the notes
  // go in its Txn.
  bool expect_successors_ ETCDLOCK_GUARDED_BY(mu_) = false;
};

}  // namespace etcdlock::detail
