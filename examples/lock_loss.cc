// Watching for lock loss: stop the critical work as soon as
// the hold is lost, before etcd can give the lock to another process.
#include <iostream>
#include <mutex>
#include <thread>

#include "etcdlock/etcdlock.h"
#include "example_options.h"

using namespace std::chrono_literals;

int main() try {
  etcdlock::LockManager manager(example_options());
  auto lock = manager.get_lock("critical-resource");
  std::lock_guard guard(*lock);

  // Either poll the token in the work loop...
  const std::stop_token lost = lock->lost_token();
  // ...or be called back at once, on etcdlock's thread: keep it short.
  std::stop_callback on_loss(lost, [] { std::cerr << "lock lost: stopping the critical task\n"; });

  for (int step = 0; step < 10; ++step) {
    if (lost.stop_requested()) {
      std::cerr << "lock lost, task interrupted at step " << step << "\n";
      return 1;
    }
    // Writes that must not come from a stale holder go through the lock.
    if (!lock->guarded_put("/myapp/progress", std::to_string(step))) return 1;
    std::this_thread::sleep_for(100ms);
  }
  std::cout << "critical task finished under fencing token " << lock->fencing_token() << "\n";
  return 0;
} catch (const etcdlock::Error& error) {
  std::cerr << error.what() << "\n";
  return 1;
}
