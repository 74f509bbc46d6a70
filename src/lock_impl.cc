#include "lock_impl.h"

#include <algorithm>

#include "etcdlock/error.h"
#include "key_space.h"
#include "manager_core.h"
#include "queue_requests.h"
#include "session.h"

namespace etcdlock::detail {
namespace {

using Steady = std::chrono::steady_clock;

}  // namespace

// Forwards watch callbacks to the lock while it lives. The hub may call a
// listener after remove(), so it must not own the lock.
class LockImpl::WatchRelay final : public etcd::WatchListener {
 public:
  explicit WatchRelay(std::weak_ptr<LockImpl> lock) : lock_(std::move(lock)) {}
  void on_created(std::int64_t start_revision) override {
    if (auto lock = lock_.lock()) lock->on_watch_created(start_revision);
  }
  void on_events(std::span<const etcd::WatchEvent> events) override {
    if (auto lock = lock_.lock()) lock->on_watch_events(events);
  }
  void on_gap() override {
    if (auto lock = lock_.lock()) lock->on_watch_gap();
  }
  void on_failed(const std::string& reason) override {
    if (auto lock = lock_.lock()) lock->on_watch_failed(reason);
  }

 private:
  std::weak_ptr<LockImpl> lock_;
};

LockImpl::LockImpl(std::shared_ptr<ManagerCore> core, std::string name, LockOptions options)
    : core_(std::move(core)),
      name_(std::move(name)),
      dir_(queue_dir(core_->options().prefix, name_)),
      dir_end_(prefix_range_end(dir_)),
      options_(options) {}

LockImpl::~LockImpl() {
  // No other reference exists, so no thread can be inside a member function.
  if (watch_id_ != 0) core_->watches().remove(watch_id_);
  if (hold_ && !hold_->lost) {
    core_->log()(LogLevel::warning, "lock destroyed while held; releasing it", {{"name", name_}, {"key", hold_->key}});
    remove_entry(hold_->key, hold_->revision, hold_->session->lease_id());
  }
}

template <class Predicate>
bool LockImpl::wait_until(std::unique_lock<std::mutex>& lock, etcd::SteadyTime deadline, std::stop_token cancel,
                          Predicate ready) {
  if (deadline == etcd::SteadyTime::max()) return changed_.wait(lock, cancel, ready);
  return changed_.wait_until(lock, cancel, deadline, ready);
}

bool LockImpl::acquire(etcd::SteadyTime deadline, std::stop_token cancel, Mode mode) {
  const auto me = std::this_thread::get_id();
  {
    std::unique_lock lock(mu_);
    core_->check_open();
    if (phase_ == Phase::held && owner_ == me) {
      if (!options_.reentrant) {
        throw Error(errc::lock_already_held, "lock " + quote_value(name_) + " is already held by this thread");
      }
      if (hold_->lost) {
        throw Error(errc::lock_expired, "the hold of lock " + quote_value(name_) + " was lost; unlock it before locking again");
      }
      ++depth_;
      return true;
    }
    if (phase_ != Phase::free) {
      // Another thread of this process holds or is acquiring the lock.
      if (mode == Mode::try_once) return false;
      const bool turn = wait_until(lock, deadline, cancel, [&] { return phase_ == Phase::free || closed_; });
      core_->check_open();
      if (!turn && cancel.stop_requested()) {
        throw Error(errc::cancelled, "the wait for lock " + quote_value(name_) + " was cancelled");
      }
      if (!turn) return false;
    }
    phase_ = Phase::acquiring;
    owner_ = me;
  }
  bool acquired = false;
  try {
    acquired = acquire_from_etcd(deadline, std::move(cancel), mode);
  } catch (...) {
    std::lock_guard lock(mu_);
    give_up_turn();
    throw;
  }
  std::lock_guard lock(mu_);
  if (acquired) {
    phase_ = Phase::held;
    depth_ = 1;
    last_hold_lost_ = false;
    core_->log()(LogLevel::debug, "lock acquired",
                 {{"name", name_}, {"key", hold_->key}, {"fencing_token", std::to_string(hold_->revision)}});
    changed_.notify_all();
  } else {
    give_up_turn();
  }
  return acquired;
}

void LockImpl::give_up_turn() {
  // A stranded entry keeps the next thread waiting until the janitor removes it.
  phase_ = entry_stranded_ ? Phase::releasing : Phase::free;
  owner_ = {};
  changed_.notify_all();
}

bool LockImpl::acquire_from_etcd(etcd::SteadyTime deadline, std::stop_token cancel, Mode mode) {
  int failures = 0;
  for (;;) {
    core_->check_open();
    if (cancel.stop_requested()) throw Error(errc::cancelled, "the wait for lock " + quote_value(name_) + " was cancelled");
    if (Steady::now() >= deadline) return false;
    try {
      const auto session = core_->session(deadline);
      ensure_watch(deadline);
      try {
        switch (queue_and_wait(session, deadline, cancel, mode)) {
          case Outcome::acquired: return true;
          case Outcome::not_acquired: return false;
          case Outcome::requeue: continue;
        }
      } catch (const etcd::LeaseNotFound&) {
        // The lease died before its keepalive stream said so: end the session
        // here, and queue again on a new lease.
        session->invalidate("etcd no longer knows the lease");
        continue;
      }
    } catch (const Error& error) {
      if (error.value() != errc::unavailable) throw;
      ++failures;
      const auto resume = Steady::now() + options_.retry_interval;
      const bool out_of_retries = options_.max_retries > 0 && failures > options_.max_retries;
      if (out_of_retries || resume >= deadline) {
        std::string key;
        {
          std::lock_guard lock(mu_);
          key = last_key_;
        }
        // Our entry may exist: the failed request may have been applied.
        if (const auto session = core_->current_session()) remove_entry(key, 0, session->lease_id());
        throw Error(errc::unavailable, "lock " + quote_value(name_) + " not acquired after " + std::to_string(failures) +
                                           " failed attempts; last: " + error.what());
      }
      core_->log()(LogLevel::info, "retrying lock after a transient failure",
                   {{"name", name_}, {"attempt", std::to_string(failures)}, {"error", error.what()}});
      std::unique_lock lock(mu_);
      wait_until(lock, resume, cancel, [&] { return closed_; });
    }
  }
}

void LockImpl::ensure_watch(etcd::SteadyTime deadline) {
  std::unique_lock lock(mu_);
  if (watch_id_ == 0) {
    // One watch on the lock's directory for the lock's lifetime: created once,
    // it stays in sync with the store, so hand-overs do not wait for etcd's
    // catch-up of new watchers.
    // Only deletions matter: of the entries ahead of a waiter, and of a
    // holder's own key.
    watch_id_ = core_->watches().add(dir_, dir_end_, 0, std::make_shared<WatchRelay>(weak_from_this()),
                                     etcd::WatchHub::Events::deletes_only);
  }
  const auto until = core_->client().request_deadline(deadline);
  const bool settled =
      wait_until(lock, until, {}, [&] { return watch_start_ > 0 || closed_ || !watch_failure_.empty(); });
  if (!watch_failure_.empty()) {
    // Not retried: a refusal is not transient. A later call asks again.
    const std::string reason = std::exchange(watch_failure_, "");
    watch_id_ = 0;
    throw Error(errc::permission_denied, "etcd refused to watch lock " + quote_value(name_) + ": " + reason);
  }
  if (!settled && !closed_) {
    throw Error(errc::unavailable, "etcd did not set up the watch of lock " + quote_value(name_) + " in time; endpoints " +
                                       core_->client().endpoints());
  }
}

LockImpl::Outcome LockImpl::queue_and_wait(const std::shared_ptr<Session>& session, etcd::SteadyTime deadline,
                                           std::stop_token cancel, Mode mode) {
  const std::string key = queue_key(dir_, session->lease_id());
  {
    std::lock_guard lock(mu_);
    wait_.emplace(key);  // keeps the deletions seen while the Txn is in flight
    last_key_ = key;
  }
  auto leave_queue = [&] {
    std::lock_guard lock(mu_);
    wait_.reset();
  };
  Enqueued entry;
  try {
    std::optional<Enqueued> first;
    if (mode == Mode::try_once) {
      first = try_first(*session, key, deadline);
      if (!first) {
        leave_queue();
        return Outcome::not_acquired;
      }
    }
    entry = first && first->own_revision != 0 ? std::move(*first) : enqueue(*session, key, deadline);
  } catch (...) {
    leave_queue();
    throw;
  }
  if (mode == Mode::try_once && !entry.ahead.empty()) {
    leave_queue();
    remove_entry(key, entry.own_revision, session->lease_id());
    return Outcome::not_acquired;
  }

  std::unique_lock lock(mu_);
  wait_->read_done(entry.own_revision, entry.read_revision, std::move(entry.ahead));
  for (;;) {
    wait_until(lock, deadline, cancel, [&] {
      return closed_ || !session->alive() || wait_->first() || wait_->own_entry_deleted() || wait_->needs_read();
    });
    if (closed_) {
      wait_.reset();
      core_->check_open();
    }
    if (!session->alive() || wait_->own_entry_deleted()) {
      // Our entry is gone (the lease died, or someone deleted it): queue again,
      // at the back, on the manager's current lease.
      core_->log()(LogLevel::info, "queue entry lost while waiting; queueing again", {{"name", name_}, {"key", key}});
      wait_.reset();
      return Outcome::requeue;
    }
    if (wait_->first()) {
      hold_.emplace(Hold{session, key, wait_->own_revision(), false, std::stop_source()});
      wait_.reset();
      return Outcome::acquired;
    }
    if (wait_->needs_read()) {
      const auto own_revision = wait_->own_revision();
      wait_->begin_read();
      lock.unlock();
      Enqueued fresh;
      try {
        fresh = read_ahead(own_revision, deadline);
      } catch (...) {
        leave_queue();
        throw;
      }
      lock.lock();
      wait_->read_done(own_revision, fresh.read_revision, std::move(fresh.ahead));
      continue;
    }
    // Cancelled or timed out: leave the queue so that no one waits behind us.
    const auto own_revision = wait_->own_revision();
    wait_.reset();
    lock.unlock();
    remove_entry(key, own_revision, session->lease_id());
    if (cancel.stop_requested()) throw Error(errc::cancelled, "the wait for lock " + quote_value(name_) + " was cancelled");
    return Outcome::not_acquired;
  }
}

std::optional<LockImpl::Enqueued> LockImpl::try_first(const Session& session, const std::string& key,
                                                      etcd::SteadyTime deadline) {
  // One round trip either way: create our entry only if the directory is
  // empty; otherwise read who is there without queueing.
  const auto txn = enqueue_if_empty_txn(dir_, dir_end_, key, core_->holder_value(), session.lease_id());
  const auto response = core_->client().txn(txn, deadline);
  if (response.succeeded()) return Enqueued{response.header().revision(), response.header().revision(), {}};
  for (const auto& kv : response.responses(0).response_range().kvs()) {
    if (kv.key() != key && is_queue_entry(dir_, kv.key())) return std::nullopt;  // someone else is queued
  }
  // Only keys of longer lock names ("a/b" under "a"), or our own stale entry:
  // take the ordinary path.
  return Enqueued{};
}

LockImpl::Enqueued LockImpl::enqueue(const Session& session, const std::string& key, etcd::SteadyTime deadline) {
  const auto txn = enqueue_txn(dir_, dir_end_, key, core_->holder_value(), session.lease_id());
  const auto response = core_->client().txn(txn, deadline);
  Enqueued entry;
  entry.read_revision = response.header().revision();
  const pb::RangeResponse* queue = nullptr;
  if (response.succeeded()) {
    entry.own_revision = response.header().revision();
    queue = &response.responses(1).response_range();
  } else {
    const auto& own = response.responses(0).response_range();
    if (own.kvs_size() == 0) throw Error(errc::unavailable, "etcd returned an inconsistent Txn for " + quote_value(key));
    entry.own_revision = own.kvs(0).create_revision();
    queue = &response.responses(1).response_range();
  }
  bool reached_own = false;
  for (const auto& kv : queue->kvs()) {
    if (kv.create_revision() >= entry.own_revision) {
      reached_own = true;
      break;
    }
    if (is_queue_entry(dir_, kv.key())) entry.ahead.push_back(kv.key());
  }
  if (!reached_own && queue->more()) return read_ahead(entry.own_revision, deadline);
  return entry;
}

LockImpl::Enqueued LockImpl::read_ahead(std::int64_t own_revision, etcd::SteadyTime deadline) {
  pb::RangeRequest range = queue_range(dir_, dir_end_);
  Enqueued entry;
  entry.own_revision = own_revision;
  if (own_revision <= 1) return entry;  // nothing can precede the first revision
  range.set_max_create_revision(own_revision - 1);
  const auto response = core_->client().range(range, deadline);
  entry.read_revision = response.header().revision();
  for (const auto& kv : response.kvs()) {
    if (is_queue_entry(dir_, kv.key())) entry.ahead.push_back(kv.key());
  }
  return entry;
}

void LockImpl::remove_entry(const std::string& key, std::int64_t revision, std::int64_t lease_id) {
  if (key.empty()) return;
  try {
    pb::DeleteRangeRequest request;
    request.set_key(key);
    core_->client().delete_range(request, Steady::now() + core_->options().command_timeout);
    return;
  } catch (const Error& error) {
    if (error.value() != errc::unavailable) {
      core_->log()(LogLevel::error, "could not delete a queue entry", {{"key", key}, {"error", error.what()}});
      return;
    }
  }
  // Until it is gone, the next attempt must not reuse the same key.
  {
    std::lock_guard lock(mu_);
    entry_stranded_ = true;
  }
  core_->release_later({key, revision, lease_id, weak_from_this()});
}

void LockImpl::on_stranded_key_deleted() {
  std::lock_guard lock(mu_);
  entry_stranded_ = false;
  if (phase_ == Phase::releasing) phase_ = Phase::free;
  changed_.notify_all();
}

void LockImpl::release(std::error_code& ec) noexcept {
  ec.clear();
  std::optional<Hold> hold;
  {
    std::lock_guard lock(mu_);
    if (phase_ != Phase::held || owner_ != std::this_thread::get_id()) {
      ec = make_error_code(errc::lock_not_held);
      return;
    }
    if (--depth_ > 0) return;
    hold = std::move(hold_);
    hold_.reset();
    phase_ = Phase::releasing;
    owner_ = {};
  }
  if (hold->lost) {
    ec = make_error_code(errc::lock_expired);
  } else {
    remove_entry(hold->key, hold->revision, hold->session->lease_id());
    core_->log()(LogLevel::debug, "lock released", {{"name", name_}, {"key", hold->key}});
  }
  std::lock_guard lock(mu_);
  last_hold_lost_ = hold->lost;
  if (!entry_stranded_) phase_ = Phase::free;
  changed_.notify_all();
}

std::chrono::milliseconds LockImpl::command_timeout() const { return core_->options().command_timeout; }

bool LockImpl::held() const {
  std::lock_guard lock(mu_);
  return phase_ == Phase::held && !hold_->lost;
}

bool LockImpl::held_by_this_thread() const {
  std::lock_guard lock(mu_);
  return phase_ == Phase::held && !hold_->lost && owner_ == std::this_thread::get_id();
}

std::string LockImpl::key() const {
  std::lock_guard lock(mu_);
  if (hold_) return hold_->key;
  if (!last_key_.empty()) return last_key_;
  if (const auto session = core_->current_session()) return queue_key(dir_, session->lease_id());
  return dir_;
}

std::stop_token LockImpl::lost_token() const {
  std::lock_guard lock(mu_);
  if (phase_ != Phase::held) return {};
  return hold_->lost_source.get_token();
}

bool LockImpl::lost() const {
  std::lock_guard lock(mu_);
  if (phase_ == Phase::held) return hold_->lost;
  return last_hold_lost_;
}

std::int64_t LockImpl::fencing_token() const {
  std::lock_guard lock(mu_);
  return phase_ == Phase::held && !hold_->lost ? hold_->revision : 0;
}

std::optional<pb::TxnRequest> LockImpl::guarded_txn() const {
  std::lock_guard lock(mu_);
  if (phase_ != Phase::held || hold_->lost) return std::nullopt;
  return while_created_at(hold_->key, hold_->revision);
}

bool LockImpl::guarded_put(std::string_view key, std::string_view value) {
  auto txn = guarded_txn();
  if (!txn) return false;
  auto* put = txn->add_success()->mutable_request_put();
  put->set_key(std::string(key));
  put->set_value(std::string(value));
  return core_->client().txn(*txn, Steady::now() + core_->options().command_timeout).succeeded();
}

bool LockImpl::guarded_delete(std::string_view key) {
  auto txn = guarded_txn();
  if (!txn) return false;
  txn->add_success()->mutable_request_delete_range()->set_key(std::string(key));
  return core_->client().txn(*txn, Steady::now() + core_->options().command_timeout).succeeded();
}

std::optional<std::stop_source> LockImpl::lose_hold(const std::string& reason) {
  if (!hold_ || hold_->lost) return std::nullopt;
  hold_->lost = true;
  core_->log()(LogLevel::warning, "lock lost", {{"name", name_}, {"key", hold_->key}, {"reason", reason}});
  return hold_->lost_source;
}

void LockImpl::on_watch_created(std::int64_t start_revision) {
  std::lock_guard lock(mu_);
  watch_start_ = start_revision;
  changed_.notify_all();
}

void LockImpl::on_watch_events(std::span<const etcd::WatchEvent> events) {
  std::optional<std::stop_source> lost;
  {
    std::lock_guard lock(mu_);
    for (const auto& event : events) {
      if (!event.deleted || !is_queue_entry(dir_, event.key)) continue;
      if (wait_) wait_->on_delete(event.key, event.mod_revision);
      if (hold_ && event.key == hold_->key && event.mod_revision > hold_->revision) {
        if (auto source = lose_hold("its key was deleted")) lost = source;
      }
    }
    changed_.notify_all();
  }
  if (lost) lost->request_stop();
}

void LockImpl::on_watch_gap() {
  std::lock_guard lock(mu_);
  if (wait_) wait_->on_gap();
  changed_.notify_all();
}

void LockImpl::on_watch_failed(const std::string& reason) {
  std::lock_guard lock(mu_);
  watch_failure_ = reason.empty() ? "permission denied" : reason;
  changed_.notify_all();
}

void LockImpl::on_session_lost(std::int64_t lease_id) {
  std::optional<std::stop_source> lost;
  {
    std::lock_guard lock(mu_);
    if (hold_ && hold_->session->lease_id() == lease_id) lost = lose_hold("its lease was lost");
    changed_.notify_all();
  }
  if (lost) lost->request_stop();
}

void LockImpl::on_manager_closed() {
  std::optional<std::stop_source> lost;
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    lost = lose_hold("the manager was closed");
    entry_stranded_ = false;  // the lease revoke removes every entry
    if (phase_ == Phase::releasing) phase_ = Phase::free;
    changed_.notify_all();
  }
  if (lost) lost->request_stop();
}

}  // namespace etcdlock::detail
