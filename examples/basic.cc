// Basic use: hold a lock around a critical section.
#include <iostream>
#include <mutex>

#include "etcdlock/etcdlock.h"
#include "example_options.h"

int main() try {
  etcdlock::LockManager manager(example_options());
  auto lock = manager.get_lock("resource-1");

  std::lock_guard guard(*lock);  // lock() now, unlock() at scope exit, even on exceptions
  std::cout << "running the protected code; holding " << lock->key() << " with fencing token " << lock->fencing_token()
            << "\n";
  return 0;
} catch (const etcdlock::Error& error) {
  std::cerr << error.what() << "\n";
  return 1;
}
