#include "etcdlock/semaphore.h"

#include "base/text.h"
#include "etcdlock/error.h"
#include "queue/guarded_write.h"
#include "recipes/semaphore_impl.h"

namespace etcdlock {

void Permit::end_hold(std::shared_ptr<detail::PermitHold> hold, std::error_code& ec) noexcept { hold->release(ec); }

bool Permit::held() const { return state_ && !state_->released() && !state_->hold().lost(); }
std::stop_token Permit::lost_token() const { return state_ ? state_->hold().lost_token() : std::stop_token(); }
bool Permit::lost() const { return state_ && state_->hold().lost(); }
std::int64_t Permit::fencing_token() const { return held() ? state_->hold().entry().revision : 0; }
std::string Permit::key() const { return state_ ? state_->hold().entry().key : std::string(); }

bool Permit::guarded_put(std::string_view key, std::string_view value) {
  if (!state_) throw Error(errc::lock_not_held, "guarded_put() without a permit");
  return detail::guarded_put(state_->hold_context().client(), state_->guarded_txn(), key, value);
}

bool Permit::guarded_delete(std::string_view key) {
  if (!state_) throw Error(errc::lock_not_held, "guarded_delete() without a permit");
  return detail::guarded_delete(state_->hold_context().client(), state_->guarded_txn(), key);
}

Semaphore::Semaphore(std::shared_ptr<detail::SemaphoreImpl> impl) : impl_(std::move(impl)) {}

// The permits it kept go back with the last reference to it.
Semaphore::~Semaphore() { impl_->release_kept(impl_->kept()); }

void Semaphore::async_acquire_permit(PermitHandler handler, std::stop_token cancel) {
  async_acquire_permit_until(std::chrono::steady_clock::time_point::max(), std::move(handler), std::move(cancel));
}

void Semaphore::async_acquire_permit_until(std::chrono::steady_clock::time_point deadline, PermitHandler handler,
                                           std::stop_token cancel) {
  if (!handler) {
    throw Error(errc::invalid_argument,
                "async_acquire_permit on semaphore " + detail::quote_value(impl_->name()) + ": the handler is empty");
  }
  impl_->async_acquire(
      deadline, std::move(cancel),
      [handler = std::move(handler), impl = impl_](std::error_code ec, std::shared_ptr<detail::PermitHold> hold) {
        try {
          handler(ec, Permit(std::move(hold)));
        } catch (const std::exception& error) {
          impl->context().log()(LogLevel::warning, "the handler of an asynchronous permit threw; ignored",
                                {{"name", impl->name()}, {"error", error.what()}});
        } catch (...) {
          impl->context().log()(LogLevel::warning, "the handler of an asynchronous permit threw; ignored",
                                {{"name", impl->name()}});
        }
      });
}

Permit Semaphore::acquire_permit(std::stop_token cancel) {
  return Permit(impl_->acquire(detail::SteadyTime::max(), std::move(cancel), detail::QueueWait::Mode::wait));
}

std::optional<Permit> Semaphore::try_acquire_permit() {
  auto hold = impl_->acquire(detail::deadline_after(impl_->context().client().command_timeout()), {},
                             detail::QueueWait::Mode::try_once);
  if (!hold) return std::nullopt;
  return Permit(std::move(hold));
}

std::optional<Permit> Semaphore::try_acquire_permit_until_steady(detail::SteadyTime deadline, std::stop_token cancel) {
  if (deadline <= std::chrono::steady_clock::now()) return try_acquire_permit();
  auto hold = impl_->acquire(deadline, std::move(cancel), detail::QueueWait::Mode::wait);
  if (!hold) return std::nullopt;
  return Permit(std::move(hold));
}

bool Semaphore::keep(std::optional<Permit> permit) {
  if (!permit) return false;
  impl_->keep(std::exchange(permit->state_, nullptr));
  return true;
}

void Semaphore::acquire() { keep(acquire_permit()); }
bool Semaphore::try_acquire() { return keep(try_acquire_permit()); }

void Semaphore::release(std::ptrdiff_t update) {
  if (update < 0 || !impl_->release_kept(static_cast<std::size_t>(update))) {
    throw Error(errc::lock_not_held, "cannot release " + std::to_string(update) + " permits of semaphore " +
                                         detail::quote_value(impl_->name()) + ": it keeps " +
                                         std::to_string(impl_->kept()));
  }
}

std::size_t Semaphore::kept() const { return impl_->kept(); }
std::int64_t Semaphore::limit() const { return impl_->limit(); }
const std::string& Semaphore::name() const { return impl_->name(); }

}  // namespace etcdlock
