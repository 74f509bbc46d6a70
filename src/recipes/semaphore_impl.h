// SemaphoreImpl: the state behind one named Semaphore, and PermitHold, one
// permit.
//
// Each acquisition is an entry of its own, "<lease id>-<n>", in the name's
// queue, admitted while fewer than `limit` entries are ahead of it. Keys are
// never reused, so threads of one process need no turn: etcd orders all of
// them. A release hands its slot over with a note (see hand_over.h) to the
// entry just past the first `limit`.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>

#include "base/mutex.h"
#include "etcdlock/options.h"
#include "keys/queue_requests.h"
#include "queue/async_acquisition.h"
#include "queue/hand_over.h"
#include "queue/hold.h"
#include "queue/named_queue.h"
#include "queue/primitive_context.h"
#include "queue/primitive_metrics.h"
#include "queue/queue_wait.h"

namespace etcdlock::detail {

class SemaphoreImpl;

// One permit: a hold, and how to give it back. Thread-safe.
class PermitHold {
 public:
  PermitHold(std::shared_ptr<SemaphoreImpl> semaphore, std::shared_ptr<Hold> hold, bool in_doubt)
      : semaphore_(std::move(semaphore)), hold_(std::move(hold)), in_doubt_(in_doubt) {}
  // Gives the permit back if release() did not.
  ~PermitHold();

  const Hold& hold() const { return *hold_; }
  PrimitiveContext& hold_context() const;
  std::optional<pb::TxnRequest> guarded_txn() const;
  // Gives the permit back, once: errc::lock_expired when it had been lost.
  void release(std::error_code& ec) noexcept;
  bool released() const { return released_.load(); }

 private:
  const std::shared_ptr<SemaphoreImpl> semaphore_;
  const std::shared_ptr<Hold> hold_;
  const bool in_doubt_;
  std::atomic<bool> released_{false};
};

// Thread-safe.
class SemaphoreImpl : public std::enable_shared_from_this<SemaphoreImpl> {
 public:
  // What the registry compares: a name is one semaphore with one limit.
  struct Options {
    std::int64_t limit = 1;
    SemaphoreOptions retry;
    friend bool operator==(const Options&, const Options&) = default;
  };

  SemaphoreImpl(std::shared_ptr<PrimitiveContext> context, std::string name, Options options);

  // A permit, or nullptr when `mode` gave up or the deadline passed. Throws Error.
  std::shared_ptr<PermitHold> acquire(SteadyTime deadline, std::stop_token cancel, QueueWait::Mode mode)
      ETCDLOCK_EXCLUDES(mu_);
  // Asynchronous acquisition (async_acquisition.h): `done` is called once, on
  // a notifier thread, with the permit or an error.
  using AsyncDone = std::function<void(std::error_code, std::shared_ptr<PermitHold>)>;
  void async_acquire(SteadyTime deadline, std::stop_token cancel, AsyncDone done);
  // Gives a permit's entry back to etcd, handing its slot over.
  void release(Hold& hold, bool in_doubt, std::error_code& ec) noexcept ETCDLOCK_EXCLUDES(mu_);

  // The permits that the counting_semaphore-shaped calls keep.
  void keep(std::shared_ptr<PermitHold> permit);
  // Gives back `count` kept permits, oldest first; false when fewer are kept.
  bool release_kept(std::size_t count) ETCDLOCK_EXCLUDES(mu_);
  std::size_t kept() const;

  const std::string& name() const { return named_.name; }
  std::weak_ptr<const void> lifetime() const { return named_.lifetime; }
  std::int64_t limit() const { return options_.limit; }
  const Options& options() const { return options_; }
  PrimitiveContext& context() { return *named_.context; }

 private:
  // Throws Error(errc::invalid_argument) when an entry ahead says another limit.
  void check_limits(const std::vector<std::string>& values) const;

  const NamedQueue named_;
  const Options options_;
  HandOverReleaser releaser_;

  mutable Mutex mu_;
  // A list, not a deque: a deque allocates 576 bytes when it is constructed.
  std::list<std::shared_ptr<PermitHold>> kept_ ETCDLOCK_GUARDED_BY(mu_);
};

}  // namespace etcdlock::detail
