#include "manager/manager_impl.h"

#include <algorithm>

#include "base/text.h"
#include "keys/names.h"
#include "manager/manager_options.h"
#include "observe/activity_watch.h"
#include "recipes/election_impl.h"
#include "recipes/lock_impl.h"
#include "recipes/multi_lock_impl.h"
#include "recipes/semaphore_impl.h"
#include "recipes/shared_lock_impl.h"

namespace etcdlock::detail {

ManagerImpl::ManagerImpl(ManagerOptions options)
    : options_(validated(std::move(options))),
      context_(std::make_shared<PrimitiveContext>(options_)),
      admin_(context_->client(), context_->log(), options_.prefix) {
  try {
    context_->connect(SteadyClock::now() + options_.dial_timeout);
  } catch (const Error& error) {
    std::string hint;
    if (options_.tls && error.value() == errc::unavailable) {
      hint =
          "; with TLS, check that the CA signed etcd's certificate, that the certificate names the host, and "
          "whether etcd asks for a client certificate";
    }
    context_->shut_down();
    if (error.value() != errc::unavailable) throw;
    throw Error(errc::unavailable, "no etcd member answered within " + std::to_string(options_.dial_timeout.count()) +
                                       " ms; endpoints " + context_->client().endpoints() + hint);
  }
}

ManagerImpl::~ManagerImpl() { close(); }

std::shared_ptr<Lock> ManagerImpl::get_lock(std::string_view name, const LockOptions& options) {
  validate_name(name);
  validate(options, name);
  context_->check_open();
  return registry_.get<Lock, LockImpl>(
      "lock", name, options, [&] { return std::make_shared<LockImpl>(context_, std::string(name), options); });
}

std::shared_ptr<MultiLock> ManagerImpl::get_multi_lock(std::span<const std::string_view> names,
                                                       const LockOptions& options) {
  if (names.empty()) throw Error(errc::invalid_argument, "a multi-lock needs at least one name");
  if (names.size() > kMaxMultiLockNames) {
    throw Error(errc::invalid_argument, "a multi-lock takes at most " + std::to_string(kMaxMultiLockNames) +
                                            " names (one etcd Txn puts them all); " + std::to_string(names.size()) +
                                            " were given");
  }
  std::vector<std::string_view> sorted(names.begin(), names.end());
  for (const auto name : sorted) {
    validate_name(name);
    validate(options, name);
  }
  // A set: {X, Y} and {Y, X} are one multi-lock, whose turns are taken in
  // this order.
  std::ranges::sort(sorted);
  if (const auto twice = std::ranges::adjacent_find(sorted); twice != sorted.end()) {
    throw Error(errc::invalid_argument, "name " + quote_value(*twice) + " is given twice for one multi-lock");
  }
  context_->check_open();
  std::vector<std::shared_ptr<LockImpl>> locks;
  for (const auto name : sorted) {
    locks.push_back(
        registry_
            .get_with_state<Lock, LockImpl>(
                "lock", name, options, [&] { return std::make_shared<LockImpl>(context_, std::string(name), options); })
            .second);
  }
  // Names hold no NUL byte: this key is no lock's.
  std::string set_key("\0multi", 6);
  for (const auto name : sorted) (set_key += '\0') += name;
  return registry_.get<MultiLock, MultiLockImpl>("multi-lock", set_key, options, [&] {
    return std::make_shared<MultiLockImpl>(context_, std::move(locks), options);
  });
}

std::shared_ptr<Election> ManagerImpl::get_election(std::string_view name, const ElectionOptions& options) {
  validate_name(name);
  validate(options, name);
  context_->check_open();
  return registry_.get<Election, ElectionImpl>(
      "election", name, options, [&] { return std::make_shared<ElectionImpl>(context_, std::string(name), options); });
}

std::shared_ptr<Semaphore> ManagerImpl::get_semaphore(std::string_view name, std::int64_t limit,
                                                      const SemaphoreOptions& options) {
  validate_name(name);
  validate(options, name);
  if (limit < 1 || limit > Semaphore::kMaxLimit) {
    throw Error(errc::invalid_argument, "limit of " + std::to_string(limit) + " for semaphore " + quote_value(name) +
                                            " must be from 1 to " + std::to_string(Semaphore::kMaxLimit));
  }
  context_->check_open();
  const SemaphoreImpl::Options key{limit, options};
  return registry_.get<Semaphore, SemaphoreImpl>(
      "semaphore", name, key, [&] { return std::make_shared<SemaphoreImpl>(context_, std::string(name), key); });
}

std::shared_ptr<SharedLock> ManagerImpl::get_shared_lock(std::string_view name, const LockOptions& options) {
  validate_name(name);
  validate(options, name);
  context_->check_open();
  return registry_.get<SharedLock, SharedLockImpl>("shared lock", name, options, [&] {
    return std::make_shared<SharedLockImpl>(context_, std::string(name), options);
  });
}

std::optional<LockInfo> ManagerImpl::info(std::string_view name) {
  context_->check_open();
  return admin_.info(name);
}

std::vector<LockInfo> ManagerImpl::list(std::string_view name_prefix) {
  context_->check_open();
  return admin_.list(name_prefix);
}

std::vector<Deadlock> ManagerImpl::deadlocks(std::string_view name_prefix) {
  context_->check_open();
  auto found = admin_.deadlocks(name_prefix);
  const auto own = lease_id();
  std::int64_t waits = 0;
  for (const auto& deadlock : found) {
    waits += std::count_if(deadlock.members.begin(), deadlock.members.end(),
                           [own](const DeadlockMember& member) { return member.lease_id == own; });
  }
  deadlock_cycles_.store(static_cast<std::int64_t>(found.size()));
  deadlocked_waits_.store(waits);
  return found;
}

bool ManagerImpl::force_unlock(std::string_view name) {
  context_->check_open();
  return admin_.force_unlock(name);
}

bool ManagerImpl::revoke_lease(std::int64_t lease_id) {
  context_->check_open();
  return admin_.revoke_lease(lease_id);
}

std::int64_t ManagerImpl::lease_id() const {
  if (context_->closed()) return 0;
  const auto session = context_->sessions().latest();
  return session ? session->lease_id() : 0;
}

SessionState ManagerImpl::state() const { return context_->sessions().state(); }

std::chrono::milliseconds ManagerImpl::time_left() const {
  if (context_->closed()) return std::chrono::milliseconds(0);
  const auto session = context_->sessions().latest();
  return session ? session->time_left() : std::chrono::milliseconds(0);
}

Subscription ManagerImpl::subscribe(SessionListener listener) {
  context_->check_open();
  if (!listener) throw Error(errc::invalid_argument, "subscribe() needs a listener; it was given an empty function");
  return context_->session_events().subscribe(std::move(listener), time_left());
}

Subscription ManagerImpl::watch(std::string_view name_prefix, LockListener listener) {
  context_->check_open();
  if (!listener) throw Error(errc::invalid_argument, "watch() needs a listener; it was given an empty function");
  auto watch = std::make_shared<ActivityWatch>(context_, name_prefix, std::move(listener));
  watch->start();
  return Subscription([watch] { watch->stop(); });
}

ManagerMetrics ManagerImpl::metrics() const {
  ManagerMetrics metrics;
  metrics.state = state();
  metrics.time_left = time_left();
  metrics.keepalive_rtt = context_->session_counters().keepalive_rtt.snapshot();
  metrics.renewals_failed = context_->session_counters().renewals_failed.load();
  metrics.leases_replaced = context_->sessions().replacements();
  const auto streams = context_->watches().streams_opened();
  metrics.watch_stream_restarts = streams > 0 ? streams - 1 : 0;
  metrics.requests = context_->client().request_counts();
  metrics.errors = context_->client().error_counts();
  metrics.locks = context_->primitive_counters().snapshot();
  metrics.deadlock_cycles = deadlock_cycles_.load();
  metrics.deadlocked_waits = deadlocked_waits_.load();
  return metrics;
}

void ManagerImpl::close() noexcept {
  const bool was_open = !context_->closed();
  context_->shut_down();
  if (was_open) context_->log()(LogLevel::info, "lock manager closed", {{"prefix", options_.prefix}});
}

}  // namespace etcdlock::detail
