// LeaderObserver: follows one election's queue and tells a callback every
// change of leader or of its proposal, and when there is no leader.
//
// It follows the whole queue (puts and deletes) as CatchUp says (catch_up.h),
// so no change is missed; the leader is the entry with the lowest create
// revision. Etcd's Go Observe follows only the first key it sees and never
// reports "no leader" (etcd issue 18163); this follows every entry.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "base/strand.h"
#include "etcd/watch_hub.h"
#include "etcdlock/election.h"
#include "keys/queue_requests.h"
#include "observe/catch_up.h"
#include "queue/primitive_context.h"

namespace etcdlock::detail {

// Thread-safe.
class LeaderObserver : public std::enable_shared_from_this<LeaderObserver> {
 public:
  using Callback = std::function<void(const std::optional<LeaderInfo>&)>;

  LeaderObserver(std::shared_ptr<PrimitiveContext> context, QueueDir queue, Callback on_change);
  ~LeaderObserver();

  // Reads the queue, starts the watch and queues the first call. Throws
  // Error(errc::unavailable).
  void start();
  // Ends the calls: none runs after this returns, unless it is called from
  // one. Idempotent.
  void stop() noexcept;

 private:
  class Relay;
  // Reads the whole queue; then applies the events held back meanwhile.
  void read();
  void on_events(std::span<const etcd::WatchEvent> events);
  void on_gap();
  void read_later();
  void apply(const etcd::WatchEvent& event) ETCDLOCK_REQUIRES(mu_);
  // Queues a call when the leader or its proposal changed; when true,
  // strand_.run_queued() is to be called, outside mu_.
  [[nodiscard]] bool publish() ETCDLOCK_REQUIRES(mu_);

  const std::shared_ptr<PrimitiveContext> context_;
  const QueueDir queue_;
  // Shared with the queued calls: a callback may end the observation and so
  // destroy this object while it runs.
  const std::shared_ptr<const Callback> on_change_;
  Strand strand_;

  Mutex mu_;
  std::map<std::string, LeaderInfo> entries_ ETCDLOCK_GUARDED_BY(mu_);  // by key
  CatchUp catch_up_ ETCDLOCK_GUARDED_BY(mu_);
  std::optional<std::optional<LeaderInfo>> published_ ETCDLOCK_GUARDED_BY(mu_);  // what was last queued
  bool stopped_ ETCDLOCK_GUARDED_BY(mu_) = false;
  std::int64_t watch_ ETCDLOCK_GUARDED_BY(mu_) = 0;
};

}  // namespace etcdlock::detail
