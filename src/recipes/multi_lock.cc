#include "etcdlock/multi_lock.h"

#include <chrono>

#include "etcdlock/error.h"
#include "recipes/multi_lock_impl.h"

namespace etcdlock {

using Mode = detail::MultiLockImpl::Mode;

MultiLock::MultiLock(std::shared_ptr<detail::MultiLockImpl> impl) : impl_(std::move(impl)) {}

MultiLock::~MultiLock() = default;

void MultiLock::lock() { lock(std::stop_token{}); }

void MultiLock::lock(std::stop_token cancel) {
  // Without a deadline the acquire only ends by succeeding or throwing.
  (void)impl_->acquire(detail::SteadyTime::max(), std::move(cancel), Mode::wait);
}

bool MultiLock::try_lock() {
  return impl_->acquire(detail::deadline_after(impl_->command_timeout()), {}, Mode::try_once);
}

bool MultiLock::try_lock_until_steady(detail::SteadyTime deadline, std::stop_token cancel) {
  // As std::timed_mutex: a deadline that has passed makes it a try_lock().
  if (deadline <= std::chrono::steady_clock::now()) return try_lock();
  return impl_->acquire(deadline, std::move(cancel), Mode::wait);
}

void MultiLock::lock_until_steady(detail::SteadyTime deadline) {
  if (!try_lock_until_steady(deadline, {})) {
    throw Error(errc::lock_timeout, impl_->description() + " was not acquired in time");
  }
}

void MultiLock::async_lock(AcquireHandler handler, std::stop_token cancel) {
  async_lock_until(std::chrono::steady_clock::time_point::max(), std::move(handler), std::move(cancel));
}

void MultiLock::async_lock_until(std::chrono::steady_clock::time_point deadline, AcquireHandler handler,
                                 std::stop_token cancel) {
  if (!handler) throw Error(errc::invalid_argument, "async_lock on " + impl_->description() + ": the handler is empty");
  impl_->async_acquire(deadline, std::move(cancel),
                       [handler = std::move(handler), impl = impl_](std::error_code ec,
                                                                    std::shared_ptr<detail::AsyncMultiLockHold> state) {
                         try {
                           handler(ec, MultiLockHold(std::move(state)));
                         } catch (const std::exception& error) {
                           impl->warn_handler_threw(error.what());
                         } catch (...) {
                           impl->warn_handler_threw("an exception that is not a std::exception");
                         }
                       });
}

void MultiLock::unlock() noexcept {
  std::error_code ec;
  unlock(ec);
  if (ec == errc::lock_not_held) impl_->warn_not_held("unlock()");
}

void MultiLock::unlock(std::error_code& ec) noexcept { impl_->release(ec); }

bool MultiLock::held() const { return impl_->held(); }
bool MultiLock::held_by_this_thread() const { return impl_->held_by_this_thread(); }
const std::vector<std::string>& MultiLock::names() const { return impl_->names(); }
std::vector<std::string> MultiLock::keys() const { return impl_->keys(); }
std::stop_token MultiLock::lost_token() const { return impl_->lost_token(); }
bool MultiLock::lost() const { return impl_->lost(); }
std::int64_t MultiLock::fencing_token() const { return impl_->fencing_token(); }
std::int64_t MultiLock::fencing_token(std::string_view name) const { return impl_->fencing_token(name); }
bool MultiLock::guarded_put(std::string_view key, std::string_view value) { return impl_->guarded_put(key, value); }
bool MultiLock::guarded_delete(std::string_view key) { return impl_->guarded_delete(key); }

}  // namespace etcdlock
