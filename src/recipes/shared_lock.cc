#include "etcdlock/shared_lock.h"

#include "base/text.h"
#include "etcdlock/error.h"
#include "queue/guarded_write.h"
#include "recipes/shared_lock_impl.h"

namespace etcdlock {

using Side = detail::SharedLockImpl::Side;
using Mode = detail::QueueWait::Mode;

SharedLock::SharedLock(std::shared_ptr<detail::SharedLockImpl> impl) : impl_(std::move(impl)) {}

SharedLock::~SharedLock() = default;

void SharedLock::lock() { lock(std::stop_token()); }

void SharedLock::lock(std::stop_token cancel) {
  (void)impl_->acquire(Side::write, detail::SteadyTime::max(), std::move(cancel), Mode::wait);
}

bool SharedLock::try_lock() {
  return impl_->acquire(Side::write, detail::deadline_after(impl_->context().client().command_timeout()), {},
                        Mode::try_once);
}

void SharedLock::lock_shared() { lock_shared(std::stop_token()); }

void SharedLock::lock_shared(std::stop_token cancel) {
  (void)impl_->acquire(Side::read, detail::SteadyTime::max(), std::move(cancel), Mode::wait);
}

bool SharedLock::try_lock_shared() {
  return impl_->acquire(Side::read, detail::deadline_after(impl_->context().client().command_timeout()), {},
                        Mode::try_once);
}

void SharedLock::async_lock(HoldHandler handler, std::stop_token cancel) {
  async_acquire(false, std::chrono::steady_clock::time_point::max(), std::move(handler), std::move(cancel));
}

void SharedLock::async_lock_until(std::chrono::steady_clock::time_point deadline, HoldHandler handler,
                                  std::stop_token cancel) {
  async_acquire(false, deadline, std::move(handler), std::move(cancel));
}

void SharedLock::async_lock_shared(HoldHandler handler, std::stop_token cancel) {
  async_acquire(true, std::chrono::steady_clock::time_point::max(), std::move(handler), std::move(cancel));
}

void SharedLock::async_lock_shared_until(std::chrono::steady_clock::time_point deadline, HoldHandler handler,
                                         std::stop_token cancel) {
  async_acquire(true, deadline, std::move(handler), std::move(cancel));
}

void SharedLock::async_acquire(bool shared, std::chrono::steady_clock::time_point deadline, HoldHandler handler,
                               std::stop_token cancel) {
  if (!handler) {
    throw Error(errc::invalid_argument,
                "asynchronous lock on shared lock " + detail::quote_value(impl_->name()) + ": the handler is empty");
  }
  const auto side = shared ? detail::SharedLockImpl::Side::read : detail::SharedLockImpl::Side::write;
  impl_->async_acquire(
      side, deadline, std::move(cancel),
      [handler = std::move(handler), impl = impl_](std::error_code ec, std::shared_ptr<detail::AsyncSharedHold> state) {
        try {
          handler(ec, SharedLockHold(std::move(state)));
        } catch (...) {
          impl->context().log()(LogLevel::warning, "the handler of an asynchronous shared lock threw; ignored",
                                {{"name", impl->name()}});
        }
      });
}

bool SharedLock::try_lock_until_steady(detail::SteadyTime deadline, std::stop_token cancel, bool shared) {
  // As std::shared_timed_mutex: a deadline that has passed makes it a try.
  if (deadline <= std::chrono::steady_clock::now()) return shared ? try_lock_shared() : try_lock();
  return impl_->acquire(shared ? Side::read : Side::write, deadline, std::move(cancel), Mode::wait);
}

void SharedLock::unlock() noexcept {
  std::error_code ec;
  unlock(ec);
  if (ec == errc::lock_not_held) impl_->warn_not_held("unlock()");
}

void SharedLock::unlock(std::error_code& ec) noexcept { impl_->release(Side::write, ec); }

void SharedLock::unlock_shared() noexcept {
  std::error_code ec;
  unlock_shared(ec);
  if (ec == errc::lock_not_held) impl_->warn_not_held("unlock_shared()");
}

void SharedLock::unlock_shared(std::error_code& ec) noexcept { impl_->release(Side::read, ec); }

bool SharedLock::held_exclusively_by_this_thread() const { return impl_->held_by_this_thread(Side::write); }
bool SharedLock::held_shared_by_this_thread() const { return impl_->held_by_this_thread(Side::read); }
std::stop_token SharedLock::lost_token() const { return impl_->lost_token(); }
std::int64_t SharedLock::fencing_token() const { return impl_->fencing_token(); }
const std::string& SharedLock::name() const { return impl_->name(); }

bool SharedLock::guarded_put(std::string_view key, std::string_view value) {
  return detail::guarded_put(impl_->context().client(), impl_->guarded_txn(), key, value);
}

bool SharedLock::guarded_delete(std::string_view key) {
  return detail::guarded_delete(impl_->context().client(), impl_->guarded_txn(), key);
}

}  // namespace etcdlock
