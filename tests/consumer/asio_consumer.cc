// The Asio component as a user's project includes it: etcdlock/asio.h with
// every completion token it documents, instantiated and linked. No etcd is
// needed: the operations are built, not started.
#include <etcdlock/asio.h>
#include <etcdlock/etcdlock.h>

#include <asio/awaitable.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <iostream>

namespace {

asio::awaitable<void> every_awaitable(etcdlock::Lock& lock, etcdlock::Semaphore& pool, etcdlock::Election& election,
                                      etcdlock::SharedLock& table) {
  etcdlock::LockHold hold = co_await etcdlock::asio::async_lock(lock, asio::use_awaitable);
  etcdlock::Permit permit = co_await etcdlock::asio::async_acquire_permit(pool, asio::use_awaitable);
  etcdlock::Leadership leadership = co_await etcdlock::asio::async_campaign(election, "me", asio::use_awaitable);
  etcdlock::SharedLockHold reading = co_await etcdlock::asio::async_lock_shared(table, asio::use_awaitable);
}

[[maybe_unused]] void every_token(etcdlock::Lock& lock) {
  std::future<etcdlock::LockHold> future =
      etcdlock::asio::async_lock_for(lock, std::chrono::seconds(1), asio::use_future);
  auto deferred = etcdlock::asio::async_lock(lock, asio::experimental::deferred);
  std::move(deferred)([](std::error_code, etcdlock::LockHold) {});
  etcdlock::asio::async_lock(lock, [](std::error_code, etcdlock::LockHold) {});
}

}  // namespace

int main() {
  // Referenced, so that they are compiled and linked.
  volatile bool never = false;
  if (never) std::cout << &every_token << reinterpret_cast<void*>(&every_awaitable);
  std::cout << "etcdlock/asio.h compiles and links with every completion token\n";
  return 0;
}
