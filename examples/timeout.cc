// A bounded wait: wait at most 5 s for the lock.
#include <iostream>
#include <mutex>

#include "etcdlock/etcdlock.h"
#include "example_options.h"

using namespace std::chrono_literals;

int main() try {
  etcdlock::LockManager manager(example_options());
  auto lock = manager.get_lock("resource-1");

  try {
    lock->lock_for(5s);
  } catch (const etcdlock::Error& error) {
    if (error.code() == etcdlock::errc::lock_timeout) {
      std::cout << "timed out waiting for the lock\n";
      return 0;
    }
    throw;
  }
  std::cout << "acquired the lock\n";
  lock->unlock();

  // The same with the standard library's vocabulary.
  if (std::unique_lock guard(*lock, 5s); guard.owns_lock()) std::cout << "acquired it again\n";
  return 0;
} catch (const etcdlock::Error& error) {
  std::cerr << error.what() << "\n";
  return 1;
}
