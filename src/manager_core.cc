#include "manager_core.h"

#include <unistd.h>

#include <algorithm>
#include <iterator>

#include "etcdlock/version.h"
#include "holder_value.h"
#include "key_space.h"
#include "lock_impl.h"
#include "queue_requests.h"

namespace etcdlock::detail {
namespace {

namespace pb = ::etcdserverpb;
using Steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::chrono::seconds kMinTtl{1};
constexpr std::chrono::seconds kMaxTtl{24 * 60 * 60};
constexpr auto kJanitorPause = milliseconds(200);

ManagerOptions validated(ManagerOptions options) {
  if (options.ttl < kMinTtl || options.ttl > kMaxTtl) {
    throw Error(errc::invalid_argument, "ttl of " + std::to_string(options.ttl.count()) +
                                            " s is out of range; it must be from 1 s to 24 h");
  }
  if (options.dial_timeout <= milliseconds::zero()) {
    throw Error(errc::invalid_argument,
                "dial_timeout of " + std::to_string(options.dial_timeout.count()) + " ms must be positive");
  }
  if (options.command_timeout <= milliseconds::zero()) {
    throw Error(errc::invalid_argument,
                "command_timeout of " + std::to_string(options.command_timeout.count()) + " ms must be positive");
  }
  validate_prefix(options.prefix);
  if (options.owner.empty()) options.owner = default_owner();
  return options;
}

void validate(const LockOptions& options, std::string_view name) {
  if (options.retry_interval <= milliseconds::zero()) {
    throw Error(errc::invalid_argument, "retry_interval of " + std::to_string(options.retry_interval.count()) +
                                            " ms for lock " + quote_value(name) + " must be positive");
  }
  if (options.max_retries < 0) {
    throw Error(errc::invalid_argument, "max_retries of " + std::to_string(options.max_retries) + " for lock " +
                                            quote_value(name) + " must not be negative");
  }
}

}  // namespace

std::shared_ptr<ManagerCore> ManagerCore::create(ManagerOptions options) {
  std::shared_ptr<ManagerCore> core(new ManagerCore(validated(std::move(options))));
  const auto deadline = Steady::now() + core->options_.dial_timeout;
  if (!core->client_->wait_connected(deadline)) {
    std::string hint;
    if (core->options_.tls) {
      hint = "; with TLS, check that the CA signed etcd's certificate, that the certificate names the host, and "
             "whether etcd asks for a client certificate";
    }
    throw Error(errc::unavailable, "no etcd member accepted a connection within " +
                                       std::to_string(core->options_.dial_timeout.count()) + " ms; endpoints " +
                                       core->client_->endpoints() + hint);
  }
  core->session(deadline);
  core->janitor_ = std::thread([raw = core.get()] { raw->run_janitor(); });
  return core;
}

ManagerCore::ManagerCore(ManagerOptions options)
    : options_(std::move(options)),
      log_(options_.log_sink),
      client_(std::make_unique<etcd::Client>(
          options_.endpoints, options_.command_timeout,
          etcd::Client::Credentials{options_.tls, options_.username, options_.password})),
      watches_(std::make_unique<etcd::WatchHub>(*client_, log_)),
      hostname_(this_hostname()),
      admin_(*client_, log_, options_.prefix) {}

ManagerCore::~ManagerCore() { close(); }

void ManagerCore::check_open() const {
  std::lock_guard lock(mu_);
  if (closed_) throw closed_error();
}

Error ManagerCore::closed_error() const {
  return Error(errc::closed, "the lock manager for prefix " + quote_value(options_.prefix) + " is closed");
}

bool ManagerCore::closed() const {
  std::lock_guard lock(mu_);
  return closed_;
}

std::shared_ptr<Lock> ManagerCore::get_lock(std::string_view name, const LockOptions& options) {
  validate_name(name);
  validate(options, name);
  std::lock_guard lock(mu_);
  if (closed_) throw closed_error();
  auto& entry = locks_[std::string(name)];
  if (auto existing = entry.lock.lock()) {
    if (entry.impl.lock()->options() != options) {
      throw Error(errc::invalid_argument, "lock " + quote_value(name) + " is already in use with other LockOptions");
    }
    return existing;
  }
  // A lock whose last reference just went may still be finishing; reuse its
  // state rather than have two states race on the same etcd key.
  auto impl = entry.impl.lock();
  if (!impl || impl->options() != options) {
    impl = std::make_shared<LockImpl>(shared_from_this(), std::string(name), options);
  }
  auto created = std::make_shared<Lock>(impl);
  entry = {created, impl};
  if (locks_.size() > 64 && locks_.size() % 64 == 0) {
    std::erase_if(locks_, [](const auto& item) { return item.second.impl.expired(); });
  }
  return created;
}

std::vector<std::shared_ptr<LockImpl>> ManagerCore::live_locks() const {
  std::vector<std::shared_ptr<LockImpl>> live;
  std::lock_guard lock(mu_);
  for (const auto& [name, entry] : locks_) {
    if (auto impl = entry.impl.lock()) live.push_back(std::move(impl));
  }
  return live;
}

SessionState ManagerCore::state() const {
  std::shared_ptr<Session> session;
  {
    std::lock_guard lock(mu_);
    if (closed_) return SessionState::closed;
    session = session_;
  }
  return session ? session->state() : SessionState::lost;
}

std::shared_ptr<Session> ManagerCore::current_session() const {
  std::lock_guard lock(mu_);
  return session_;
}

std::shared_ptr<Session> ManagerCore::session(etcd::SteadyTime deadline) {
  std::unique_lock lock(mu_);
  // One grant at a time, made without holding mu_; the others wait for it.
  for (;;) {
    if (closed_) throw closed_error();
    if (session_ && session_->alive()) return session_;
    if (!granting_) break;
    const bool changed = deadline == etcd::SteadyTime::max()
                             ? (session_changed_.wait(lock), true)
                             : session_changed_.wait_until(lock, deadline) == std::cv_status::no_timeout;
    if (!changed && granting_) {
      throw Error(errc::unavailable, "timed out waiting for a new lease; endpoints " + client_->endpoints());
    }
  }
  granting_ = true;
  lock.unlock();
  std::shared_ptr<Session> fresh;
  try {
    std::weak_ptr<ManagerCore> weak = weak_from_this();
    fresh = std::make_shared<Session>(*client_, log_, options_.ttl, deadline,
                                      [weak](Session& lost, const std::string& reason) {
                                        if (auto core = weak.lock()) core->on_session_lost(lost, reason);
                                      });
  } catch (...) {
    lock.lock();
    granting_ = false;
    session_changed_.notify_all();
    throw;
  }
  lock.lock();
  granting_ = false;
  session_changed_.notify_all();
  if (closed_) {
    lock.unlock();
    fresh->end(Steady::now() + options_.command_timeout);
    throw closed_error();
  }
  std::shared_ptr<Session> previous = std::exchange(session_, fresh);
  lock.unlock();
  if (previous) log_(LogLevel::warning, "lease replaced", {{"old_lease", previous->lease_hex()}, {"lease", fresh->lease_hex()}});
  return fresh;
}

void ManagerCore::on_session_lost(Session& session, const std::string& /*reason*/) {
  for (const auto& lock : live_locks()) lock->on_session_lost(session.lease_id());
  janitor_wake_.notify_all();
}

std::string ManagerCore::holder_value() const {
  return encode_holder_value(
      {options_.owner, hostname_, static_cast<long>(getpid()), std::chrono::system_clock::now(), kVersion});
}

void ManagerCore::release_later(StrandedEntry entry) {
  log_(LogLevel::warning, "could not delete a queue entry; retrying in the background", {{"key", entry.key}});
  {
    std::lock_guard lock(mu_);
    stranded_.push_back(std::move(entry));
  }
  janitor_wake_.notify_all();
}

bool ManagerCore::delete_stranded(const StrandedEntry& entry) {
  const auto session = current_session();
  if (!session || session->lease_id() != entry.lease_id || !session->alive()) return true;  // gone with its lease
  try {
    // Delete only the entry we left, never a later one under the same key.
    auto txn = entry.revision != 0 ? while_created_at(entry.key, entry.revision) : pb::TxnRequest();
    txn.add_success()->mutable_request_delete_range()->set_key(entry.key);
    client_->txn(txn, Steady::now() + options_.command_timeout);
    return true;
  } catch (const Error& error) {
    return error.value() != errc::unavailable;
  }
}

void ManagerCore::run_janitor() {
  std::unique_lock lock(mu_);
  for (;;) {
    janitor_wake_.wait_for(lock, kJanitorPause, [&] { return closed_ || !stranded_.empty(); });
    if (closed_) return;
    auto pending = std::move(stranded_);
    stranded_.clear();
    lock.unlock();
    std::vector<StrandedEntry> failed;
    for (auto& entry : pending) {
      if (!delete_stranded(entry)) {
        failed.push_back(std::move(entry));
      } else if (auto owner = entry.owner.lock()) {
        owner->on_stranded_key_deleted();
      }
    }
    const bool retry_later = !failed.empty();
    lock.lock();
    std::move(failed.begin(), failed.end(), std::back_inserter(stranded_));
    if (retry_later) janitor_wake_.wait_for(lock, kJanitorPause, [&] { return closed_; });
  }
}

void ManagerCore::close() noexcept {
  std::shared_ptr<Session> session;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
    session = std::move(session_);
  }
  janitor_wake_.notify_all();
  session_changed_.notify_all();
  for (const auto& lock : live_locks()) lock->on_manager_closed();
  // Revoking the lease deletes every entry of this manager at once: held
  // locks, places in queues, and entries the janitor had not deleted yet.
  if (session) session->end(Steady::now() + options_.command_timeout);
  if (janitor_.joinable()) janitor_.join();
  watches_->close();
  log_(LogLevel::info, "lock manager closed", {{"prefix", options_.prefix}});
}

}  // namespace etcdlock::detail
