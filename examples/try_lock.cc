// Trying without waiting: one round trip, never a wait in the queue.
#include <iostream>
#include <mutex>

#include "etcdlock/etcdlock.h"
#include "example_options.h"

int main() try {
  etcdlock::LockManager manager(example_options());
  auto lock = manager.get_lock("resource-1");

  if (std::unique_lock guard(*lock, std::try_to_lock); guard.owns_lock()) {
    std::cout << "acquired the lock\n";
  } else {
    std::cout << "another holder has the lock\n";
  }
  return 0;
} catch (const etcdlock::Error& error) {
  std::cerr << error.what() << "\n";
  return 1;
}
