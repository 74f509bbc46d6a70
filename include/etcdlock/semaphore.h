// Semaphore: at most `limit` holders of a name across all processes, each
// holding a permit tied to its manager's lease.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>

#include "etcdlock/deadline.h"
#include "etcdlock/owned_hold.h"

namespace etcdlock {

namespace detail {
class SemaphoreImpl;
class PermitHold;
}  // namespace detail

// One permit of a Semaphore, held until released or lost; releasing it on
// destruction. Move-only; a default-constructed Permit holds nothing.
// Moved over another, it gives back what that one held first; `if (permit)`
// says it holds a permit, lost or not, until release().
class Permit : public detail::OwnedHold<Permit, detail::PermitHold> {
 public:
  Permit() = default;

  // Holds a permit that was not lost.
  bool held() const;

  // Gives the permit back: the next waiter gets it in milliseconds. Never
  // throws; failures are logged.
  void release() noexcept { end(); }
  // As release(), reporting errc::lock_not_held (no permit),
  // errc::lock_expired (it had been lost; it is given back all the same) and
  // errc::unavailable (etcd did not answer: given back here all the same,
  // the lost token is requested and the key removed in the background).
  void release(std::error_code& ec) noexcept { end(ec); }

  // Requested when the permit is lost (its lease expired, was revoked or
  // could not be renewed before its local deadline; its key was deleted; the
  // manager closed), before etcd could give it to another process.
  std::stop_token lost_token() const;
  bool lost() const;
  // The create revision of the permit's key; 0 without a permit.
  std::int64_t fencing_token() const;
  // The etcd key of the permit's entry, "<prefix>/<name>/<lease id in hex>"
  // or with a suffix for a second permit of one lease; empty without a permit.
  std::string key() const;
  // Writes to etcd only while this permit stands (one Txn that compares its
  // key's create revision): true when committed, false when the permit is
  // gone or lost. Throws Error: unavailable; lock_not_held without a permit.
  bool guarded_put(std::string_view key, std::string_view value);
  bool guarded_delete(std::string_view key);

 private:
  friend class Semaphore;
  friend class detail::OwnedHold<Permit, detail::PermitHold>;
  explicit Permit(std::shared_ptr<detail::PermitHold> hold) noexcept : OwnedHold(std::move(hold)) {}
  static void end_hold(std::shared_ptr<detail::PermitHold> hold, std::error_code& ec) noexcept;
};

// A counting semaphore on etcd: at most limit() permits are held at once,
// across every process; waiters are served in FIFO order. Permits are keys
// on the manager's lease, so a crashed holder's permits come back within
// one TTL.
//
// Two ways to use it: Permit objects (acquire_permit()), each with its own
// lost token and fencing token; or the shape of std::counting_semaphore
// (acquire(), release()), where the semaphore keeps the permits and any
// thread may release one.
//
// Thread-safe. Obtained from LockManager::get_semaphore(); may outlive the
// manager, after whose close() every call throws errc::closed.
class Semaphore {
 public:
  // The largest limit: each waiter reads and watches up to `limit` entries
  // ahead of it, and beyond this a limit counts nothing a key per permit can.
  static constexpr std::int64_t kMaxLimit = 1'000'000;

  // Semaphores are made by LockManager::get_semaphore().
  explicit Semaphore(std::shared_ptr<detail::SemaphoreImpl> impl);
  ~Semaphore();
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  // Blocks until a permit is held. Throws Error: cancelled (no key is left),
  // closed, unavailable, permission_denied, invalid_argument (etcd holds this
  // semaphore with another limit).
  [[nodiscard]] Permit acquire_permit(std::stop_token cancel = {});
  // Never waits in the queue: a permit if one is free now, else nullopt. One
  // round trip while etcd answers; bounded by ManagerOptions::command_timeout,
  // as Lock::try_lock(), after which it throws Error(errc::unavailable).
  [[nodiscard]] std::optional<Permit> try_acquire_permit();
  template <class Rep, class Period>
  [[nodiscard]] std::optional<Permit> try_acquire_permit_for(const std::chrono::duration<Rep, Period>& timeout,
                                                             std::stop_token cancel = {}) {
    return try_acquire_permit_until_steady(detail::deadline_after(timeout), std::move(cancel));
  }
  template <class Clock, class Duration>
  [[nodiscard]] std::optional<Permit> try_acquire_permit_until(const std::chrono::time_point<Clock, Duration>& deadline,
                                                               std::stop_token cancel = {}) {
    return try_acquire_permit_until_steady(detail::to_steady(deadline), std::move(cancel));
  }

  // Asynchronous acquisition, as Lock::async_lock: no thread waits, and
  // `handler` is called once, on an etcdlock notifier thread, with the
  // permit or an error (lock_timeout at the deadline, cancelled, closed,
  // unavailable, permission_denied, invalid_argument). A cancelled or timed
  // out wait leaves no key. For Asio's completion tokens, see etcdlock/asio.h.
  using PermitHandler = std::function<void(std::error_code, Permit)>;
  void async_acquire_permit(PermitHandler handler, std::stop_token cancel = {});
  void async_acquire_permit_until(std::chrono::steady_clock::time_point deadline, PermitHandler handler,
                                  std::stop_token cancel = {});
  template <class Rep, class Period>
  void async_acquire_permit_for(const std::chrono::duration<Rep, Period>& timeout, PermitHandler handler,
                                std::stop_token cancel = {}) {
    async_acquire_permit_until(detail::deadline_after(timeout), std::move(handler), std::move(cancel));
  }

  // std::counting_semaphore's shape: the semaphore keeps the permit.
  void acquire();
  [[nodiscard]] bool try_acquire();
  template <class Rep, class Period>
  [[nodiscard]] bool try_acquire_for(const std::chrono::duration<Rep, Period>& timeout) {
    return keep(try_acquire_permit_for(timeout));
  }
  template <class Clock, class Duration>
  [[nodiscard]] bool try_acquire_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return keep(try_acquire_permit_until(deadline));
  }
  // Gives back `update` permits kept by acquire() or try_acquire*(), the
  // oldest first, from any thread. Throws Error(errc::lock_not_held) when it
  // keeps fewer (and gives back none).
  void release(std::ptrdiff_t update = 1);
  // How many permits acquire() and try_acquire*() keep now.
  std::size_t kept() const;

  std::int64_t limit() const;
  const std::string& name() const;

 private:
  std::optional<Permit> try_acquire_permit_until_steady(detail::SteadyTime deadline, std::stop_token cancel);
  bool keep(std::optional<Permit> permit);

  std::shared_ptr<detail::SemaphoreImpl> impl_;
};

}  // namespace etcdlock
