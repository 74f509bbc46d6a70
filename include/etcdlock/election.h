// Election: leader election on etcd, one candidate per process, with etcd's
// own key layout, so that etcdlock, Go's concurrency.Election and
// `etcdctl elect` take part in the same elections.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>

#include "etcdlock/deadline.h"
#include "etcdlock/leadership.h"

namespace etcdlock {

namespace detail {
class ElectionImpl;
class LeaderObserver;
}  // namespace detail

// Who leads an election, as etcd has it.
struct LeaderInfo {
  std::string key;    // the leader's key: "<prefix>/<name>/<lease id in hex>"
  std::string value;  // its proposal
  std::int64_t lease_id = 0;
  std::int64_t revision = 0;  // its key's create revision: the leader's fencing token

  friend bool operator==(const LeaderInfo&, const LeaderInfo&) = default;
};

// A subscription to an election's leader changes, from Election::observe().
// Destroying it, or stop(), ends the callbacks: once it returns, none runs
// (unless it is called from the callback itself). Movable.
class Observation {
 public:
  Observation() = default;
  Observation(Observation&& other) noexcept = default;
  Observation& operator=(Observation&& other) noexcept;
  ~Observation();

  void stop() noexcept;

 private:
  friend class Election;
  explicit Observation(std::shared_ptr<detail::LeaderObserver> observer);
  std::shared_ptr<detail::LeaderObserver> observer_;
};

// One election, by name. Candidates queue by the create revision of their
// keys, FIFO; the first is the leader. Keys are attached to the manager's
// lease, so a crashed leader is replaced within one TTL.
//
// Within a process, one thread at a time is the candidate or the leader, as
// with a lock: a second thread's campaign() waits until the first's
// candidacy or leadership ends.
//
// Thread-safe. Obtained from LockManager::get_election(); may outlive the
// manager, after whose close() every call throws errc::closed.
class Election {
 public:
  // Elections are made by LockManager::get_election().
  explicit Election(std::shared_ptr<detail::ElectionImpl> impl);
  ~Election();
  Election(const Election&) = delete;
  Election& operator=(const Election&) = delete;

  // Campaigns with `value` as the proposal and blocks until this thread
  // leads. A thread that leads already proclaims `value` instead. Throws
  // Error: cancelled (`cancel` was requested; no key is left), closed,
  // unavailable, permission_denied. A campaign that fails leaves no key.
  void campaign(std::string_view value);
  void campaign(std::string_view value, std::stop_token cancel);
  // As campaign, until the deadline: false when not elected by then (no key
  // is left).
  template <class Rep, class Period>
  [[nodiscard]] bool campaign_for(std::string_view value, const std::chrono::duration<Rep, Period>& timeout,
                                  std::stop_token cancel = {}) {
    return campaign_until_steady(value, detail::deadline_after(timeout), std::move(cancel));
  }
  template <class Clock, class Duration>
  [[nodiscard]] bool campaign_until(std::string_view value, const std::chrono::time_point<Clock, Duration>& deadline,
                                    std::stop_token cancel = {}) {
    return campaign_until_steady(value, detail::to_steady(deadline), std::move(cancel));
  }

  // Asynchronous campaign, as Lock::async_lock: no thread waits, and
  // `handler` is called once, on an etcdlock notifier thread, with the
  // leadership as an object or with an error (lock_timeout at the deadline,
  // cancelled, closed, unavailable, permission_denied); a campaign that
  // fails leaves no key. For Asio's completion tokens, see etcdlock/asio.h.
  using CampaignHandler = std::function<void(std::error_code, Leadership)>;
  void async_campaign(std::string value, CampaignHandler handler, std::stop_token cancel = {});
  void async_campaign_until(std::string value, std::chrono::steady_clock::time_point deadline, CampaignHandler handler,
                            std::stop_token cancel = {});
  template <class Rep, class Period>
  void async_campaign_for(std::string value, const std::chrono::duration<Rep, Period>& timeout, CampaignHandler handler,
                          std::stop_token cancel = {}) {
    async_campaign_until(std::move(value), detail::deadline_after(timeout), std::move(handler), std::move(cancel));
  }

  // The leader replaces its proposal, in one Txn that compares its key's
  // create revision. False when this process does not lead (any more).
  // Throws Error(errc::unavailable).
  bool proclaim(std::string_view value);

  // Ends this process's leadership: deletes its key, so the next candidate
  // leads. Does nothing when it does not lead; a leadership already lost is
  // only acknowledged. Never throws: from the moment it is called this
  // process does not lead, whatever etcd answers. When etcd does not confirm
  // the delete (no reply), the delete may have happened and another
  // candidate may lead already, so the leadership's lost token fires and the
  // key is removed in the background (at the latest it goes with the lease).
  void resign() noexcept;

  // This process leads, as far as it knows: its key is first and its lease
  // is alive.
  bool is_leader() const;
  // During a leadership, requested when it ends involuntarily (the lease
  // expired, was revoked or could not be renewed before its local deadline;
  // the key was deleted; the manager closed), before etcd can let another
  // candidate lead. Outside one, a token with stop_possible() == false.
  std::stop_token lost_token() const;
  // The leader's fencing token: its key's create revision, strictly
  // increasing from one leader to the next. 0 when not leading.
  std::int64_t fencing_token() const;
  // Writes to etcd only while this leadership stands (one Txn that compares
  // the key's create revision): true when committed.
  bool guarded_put(std::string_view key, std::string_view value);
  bool guarded_delete(std::string_view key);

  // The current leader, read from etcd; nullopt when there is none. Throws
  // Error(errc::unavailable).
  std::optional<LeaderInfo> leader();

  // Calls `on_change` with the leader at once, then each time the leader or
  // its proposal changes, and with nullopt whenever there is no leader: every
  // change in order, one call at a time, on a notifier thread (see
  // LockManager). Throws Error(errc::unavailable) when the first read fails.
  [[nodiscard]] Observation observe(std::function<void(const std::optional<LeaderInfo>&)> on_change);

  const std::string& name() const;

 private:
  bool campaign_until_steady(std::string_view value, detail::SteadyTime deadline, std::stop_token cancel);

  std::shared_ptr<detail::ElectionImpl> impl_;
};

}  // namespace etcdlock
