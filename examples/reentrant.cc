// Reentrancy: the holding thread may lock again, and must
// unlock as often. Only the first lock and the last unlock go to etcd.
#include <iostream>
#include <mutex>

#include "etcdlock/etcdlock.h"
#include "example_options.h"

int main() try {
  etcdlock::LockManager manager(example_options());
  auto lock = manager.get_lock("resource-1");

  std::lock_guard outer(*lock);
  std::lock_guard inner(*lock);  // the same object for the same name: reentrant
  std::cout << "reentrant lock acquired twice; fencing token " << lock->fencing_token() << "\n";
  return 0;
} catch (const etcdlock::Error& error) {
  std::cerr << error.what() << "\n";
  return 1;
}
