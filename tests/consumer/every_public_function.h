// Refers to every function that the public headers declare, so that a program
// including this links only if the library defines each of them. Shared by
// the package consumer and the unit tests.
#pragma once

#include <etcdlock/etcdlock.h>

#include <cstddef>
#include <cstring>
#include <ratio>

namespace etcdlock_consumer {

// Keeps a function's address alive past the optimizer, so its symbol must link.
template <class Function>
void keep(const Function& function) {
  static volatile unsigned char sink;
  unsigned char bytes[sizeof function];
  std::memcpy(bytes, &function, sizeof function);
  for (unsigned char byte : bytes) sink = sink ^ byte;
}

inline void refer_to_every_public_function() {
  using namespace etcdlock;
  keep(&error_category);
  keep(static_cast<std::error_code (*)(errc) noexcept>(&make_error_code));
  keep(static_cast<std::string_view (*)(errc) noexcept>(&to_string));
  keep(static_cast<std::string_view (*)(LogLevel) noexcept>(&to_string));
  keep(static_cast<std::string_view (*)(SessionState) noexcept>(&to_string));
  keep(static_cast<std::string_view (*)(LockEvent::Kind) noexcept>(&to_string));
  keep(&stderr_log_sink);
  keep(&lease_hex);
  keep(&loss_margin);

  keep(&LockManager::get_lock);
  keep(&LockManager::info);
  keep(&LockManager::list);
  keep(&LockManager::deadlocks);
  keep(&LockManager::force_unlock);
  keep(&LockManager::revoke_lease);
  keep(&LockManager::lease_id);
  keep(&LockManager::state);
  keep(&LockManager::time_left);
  keep(&LockManager::subscribe);
  keep(&LockManager::watch);
  keep(&LockManager::metrics);
  keep(&LockManager::close);

  keep(static_cast<void (Lock::*)()>(&Lock::lock));
  keep(static_cast<void (Lock::*)(std::stop_token)>(&Lock::lock));
  keep(&Lock::try_lock);
  keep(static_cast<bool (Lock::*)(const std::chrono::milliseconds&)>(&Lock::try_lock_for<long, std::milli>));
  keep(static_cast<bool (Lock::*)(const std::chrono::milliseconds&, std::stop_token)>(
      &Lock::try_lock_for<long, std::milli>));
  keep(&Lock::try_lock_until<std::chrono::system_clock, std::chrono::system_clock::duration>);
  keep(&Lock::lock_for<long, std::milli>);
  keep(static_cast<void (Lock::*)() noexcept>(&Lock::unlock));
  keep(static_cast<void (Lock::*)(std::error_code&) noexcept>(&Lock::unlock));
  keep(&Lock::held);
  keep(&Lock::held_by_this_thread);
  keep(&Lock::name);
  keep(&Lock::key);
  keep(&Lock::lost_token);
  keep(&Lock::lost);
  keep(&Lock::fencing_token);
  keep(&Lock::guarded_put);
  keep(&Lock::guarded_delete);
  keep(&Error::value);

  keep(&LockManager::get_election);
  keep(&LockManager::get_semaphore);
  keep(&LockManager::get_shared_lock);

  keep(static_cast<void (Election::*)(std::string_view)>(&Election::campaign));
  keep(static_cast<void (Election::*)(std::string_view, std::stop_token)>(&Election::campaign));
  keep(&Election::campaign_for<long, std::milli>);
  keep(&Election::campaign_until<std::chrono::system_clock, std::chrono::system_clock::duration>);
  keep(&Election::proclaim);
  keep(&Election::resign);
  keep(&Election::is_leader);
  keep(&Election::lost_token);
  keep(&Election::fencing_token);
  keep(&Election::guarded_put);
  keep(&Election::guarded_delete);
  keep(&Election::leader);
  keep(&Election::observe);
  keep(&Election::name);
  keep(&Observation::stop);
  keep(static_cast<Observation& (Observation::*)(Observation &&) noexcept>(&Observation::operator=));

  keep(&Semaphore::acquire_permit);
  keep(&Semaphore::try_acquire_permit);
  keep(&Semaphore::try_acquire_permit_for<long, std::milli>);
  keep(&Semaphore::try_acquire_permit_until<std::chrono::system_clock, std::chrono::system_clock::duration>);
  keep(&Semaphore::acquire);
  keep(&Semaphore::try_acquire);
  keep(&Semaphore::try_acquire_for<long, std::milli>);
  keep(&Semaphore::try_acquire_until<std::chrono::system_clock, std::chrono::system_clock::duration>);
  keep(&Semaphore::release);
  keep(&Semaphore::kept);
  keep(&Semaphore::limit);
  keep(&Semaphore::name);
  keep(&Permit::held);
  keep(static_cast<void (Permit::*)() noexcept>(&Permit::release));
  keep(static_cast<void (Permit::*)(std::error_code&) noexcept>(&Permit::release));
  keep(&Permit::lost_token);
  keep(&Permit::lost);
  keep(&Permit::fencing_token);
  keep(&Permit::key);
  keep(&Permit::guarded_put);
  keep(&Permit::guarded_delete);
  keep(static_cast<Permit& (Permit::*)(Permit &&) noexcept>(&Permit::operator=));

  keep(&Semaphore::async_acquire_permit);
  keep(&Semaphore::async_acquire_permit_until);
  keep(&Semaphore::async_acquire_permit_for<long, std::milli>);

  keep(&Lock::async_lock);
  keep(&Lock::async_lock_until);
  keep(&Lock::async_lock_for<long, std::milli>);
  keep(&LockHold::held);
  keep(static_cast<void (LockHold::*)() noexcept>(&LockHold::release));
  keep(static_cast<void (LockHold::*)(std::error_code&) noexcept>(&LockHold::release));
  keep(&LockHold::lost_token);
  keep(&LockHold::lost);
  keep(&LockHold::fencing_token);
  keep(&LockHold::name);
  keep(&LockHold::key);
  keep(&LockHold::guarded_put);
  keep(&LockHold::guarded_delete);
  keep(static_cast<LockHold& (LockHold::*)(LockHold &&) noexcept>(&LockHold::operator=));

  keep(&Election::async_campaign);
  keep(&Election::async_campaign_until);
  keep(&Election::async_campaign_for<long, std::milli>);
  keep(&Leadership::is_leader);
  keep(&Leadership::proclaim);
  keep(static_cast<void (Leadership::*)() noexcept>(&Leadership::resign));
  keep(static_cast<void (Leadership::*)(std::error_code&) noexcept>(&Leadership::resign));
  keep(&Leadership::lost_token);
  keep(&Leadership::lost);
  keep(&Leadership::fencing_token);
  keep(&Leadership::name);
  keep(&Leadership::key);
  keep(&Leadership::guarded_put);
  keep(&Leadership::guarded_delete);
  keep(static_cast<Leadership& (Leadership::*)(Leadership &&) noexcept>(&Leadership::operator=));

  keep(&SharedLock::async_lock);
  keep(&SharedLock::async_lock_until);
  keep(&SharedLock::async_lock_for<long, std::milli>);
  keep(&SharedLock::async_lock_shared);
  keep(&SharedLock::async_lock_shared_until);
  keep(&SharedLock::async_lock_shared_for<long, std::milli>);
  keep(&SharedLockHold::held);
  keep(&SharedLockHold::writing);
  keep(static_cast<void (SharedLockHold::*)() noexcept>(&SharedLockHold::release));
  keep(static_cast<void (SharedLockHold::*)(std::error_code&) noexcept>(&SharedLockHold::release));
  keep(&SharedLockHold::lost_token);
  keep(&SharedLockHold::lost);
  keep(&SharedLockHold::fencing_token);
  keep(&SharedLockHold::name);
  keep(&SharedLockHold::key);
  keep(&SharedLockHold::guarded_put);
  keep(&SharedLockHold::guarded_delete);
  keep(static_cast<SharedLockHold& (SharedLockHold::*)(SharedLockHold &&) noexcept>(&SharedLockHold::operator=));

  keep(static_cast<void (SharedLock::*)()>(&SharedLock::lock));
  keep(static_cast<void (SharedLock::*)(std::stop_token)>(&SharedLock::lock));
  keep(&SharedLock::try_lock);
  keep(&SharedLock::try_lock_for<long, std::milli>);
  keep(&SharedLock::try_lock_until<std::chrono::system_clock, std::chrono::system_clock::duration>);
  keep(static_cast<void (SharedLock::*)() noexcept>(&SharedLock::unlock));
  keep(static_cast<void (SharedLock::*)(std::error_code&) noexcept>(&SharedLock::unlock));
  keep(static_cast<void (SharedLock::*)()>(&SharedLock::lock_shared));
  keep(static_cast<void (SharedLock::*)(std::stop_token)>(&SharedLock::lock_shared));
  keep(&SharedLock::try_lock_shared);
  keep(&SharedLock::try_lock_shared_for<long, std::milli>);
  keep(&SharedLock::try_lock_shared_until<std::chrono::system_clock, std::chrono::system_clock::duration>);
  keep(static_cast<void (SharedLock::*)() noexcept>(&SharedLock::unlock_shared));
  keep(static_cast<void (SharedLock::*)(std::error_code&) noexcept>(&SharedLock::unlock_shared));
  keep(&SharedLock::held_exclusively_by_this_thread);
  keep(&SharedLock::held_shared_by_this_thread);
  keep(&SharedLock::lost_token);
  keep(&SharedLock::fencing_token);
  keep(&SharedLock::guarded_put);
  keep(&SharedLock::guarded_delete);
  keep(&SharedLock::name);
}

}  // namespace etcdlock_consumer
