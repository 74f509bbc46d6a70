#include "etcdlock/lock.h"

#include <chrono>

#include "base/text.h"
#include "etcdlock/error.h"
#include "recipes/lock_impl.h"

namespace etcdlock {

using Mode = detail::LockImpl::Mode;

Lock::Lock(std::shared_ptr<detail::LockImpl> impl) : impl_(std::move(impl)) {}

Lock::~Lock() = default;

void Lock::lock() { lock(std::stop_token{}); }

void Lock::lock(std::stop_token cancel) {
  // Without a deadline the acquire only ends by succeeding or throwing.
  (void)impl_->acquire(detail::SteadyTime::max(), std::move(cancel), Mode::wait);
}

bool Lock::try_lock() { return impl_->acquire(detail::deadline_after(impl_->command_timeout()), {}, Mode::try_once); }

bool Lock::try_lock_until_steady(detail::SteadyTime deadline, std::stop_token cancel) {
  // As std::timed_mutex: a deadline that has passed makes it a try_lock().
  if (deadline <= std::chrono::steady_clock::now()) return try_lock();
  return impl_->acquire(deadline, std::move(cancel), Mode::wait);
}

void Lock::lock_until_steady(detail::SteadyTime deadline) {
  if (!try_lock_until_steady(deadline, {})) {
    throw Error(errc::lock_timeout, "lock " + detail::quote_value(impl_->name()) + " was not acquired in time");
  }
}

void Lock::async_lock(AcquireHandler handler, std::stop_token cancel) {
  async_lock_until(std::chrono::steady_clock::time_point::max(), std::move(handler), std::move(cancel));
}

void Lock::async_lock_until(std::chrono::steady_clock::time_point deadline, AcquireHandler handler,
                            std::stop_token cancel) {
  if (!handler)
    throw Error(errc::invalid_argument,
                "async_lock on lock " + detail::quote_value(impl_->name()) + ": the handler is empty");
  impl_->async_acquire(
      deadline, std::move(cancel),
      [handler = std::move(handler), impl = impl_](std::error_code ec, std::shared_ptr<detail::AsyncLockHold> state) {
        try {
          handler(ec, LockHold(std::move(state)));
        } catch (const std::exception& error) {
          impl->warn_handler_threw(error.what());
        } catch (...) {
          impl->warn_handler_threw("an exception that is not a std::exception");
        }
      });
}

void Lock::unlock() noexcept {
  std::error_code ec;
  unlock(ec);
  if (ec == errc::lock_not_held) impl_->warn_not_held("unlock()");
}

void Lock::unlock(std::error_code& ec) noexcept { impl_->release(ec); }

bool Lock::held() const { return impl_->held(); }
bool Lock::held_by_this_thread() const { return impl_->held_by_this_thread(); }
const std::string& Lock::name() const { return impl_->name(); }
std::string Lock::key() const { return impl_->key(); }
std::stop_token Lock::lost_token() const { return impl_->lost_token(); }
bool Lock::lost() const { return impl_->lost(); }
std::int64_t Lock::fencing_token() const { return impl_->fencing_token(); }
bool Lock::guarded_put(std::string_view key, std::string_view value) { return impl_->guarded_put(key, value); }
bool Lock::guarded_delete(std::string_view key) { return impl_->guarded_delete(key); }

}  // namespace etcdlock
