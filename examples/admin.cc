// Admin operations: inspect, list, look for deadlocks and force-unlock locks.
#include <condition_variable>
#include <iostream>
#include <mutex>

#include "etcdlock/etcdlock.h"
#include "example_options.h"

namespace {

void print(const etcdlock::LockInfo& info) {
  std::cout << "  " << info.name << ": owner " << info.owner << ", key " << info.key << ", fencing token "
            << info.fencing_token << ", lease TTL left " << info.ttl_remaining.count() << " s, " << info.waiters
            << " waiting\n";
}

}  // namespace

int main() try {
  etcdlock::LockManager manager(example_options());
  auto held = manager.get_lock("resource-1");
  std::lock_guard guard(*held);  // something to look at

  if (const auto info = manager.info("resource-1")) {
    std::cout << "holder of resource-1:\n";
    print(*info);
  }
  const auto locks = manager.list();
  std::cout << locks.size() << " lock(s) held under the prefix:\n";
  for (const auto& info : locks) print(info);
  // Cycles of managers that wait for one another (none here: one holder).
  for (const auto& cycle : manager.deadlocks()) {
    std::cout << "deadlock:";
    for (const auto& member : cycle.members) {
      std::cout << " " << member.owner << " holds " << member.holds << ", waits for " << member.waits_for << ";";
    }
    std::cout << "\n";
  }

  if (manager.force_unlock("resource-1")) std::cout << "force-unlocked resource-1\n";
  // The holder hears of it through its lost token, which any std wait accepts.
  std::mutex mutex;
  std::condition_variable_any lost;
  std::unique_lock wait(mutex);
  lost.wait(wait, held->lost_token(), [] { return false; });
  std::cout << "the holder saw the loss: held() is " << std::boolalpha << held->held() << "\n";
  return 0;
} catch (const etcdlock::Error& error) {
  std::cerr << error.what() << "\n";
  return 1;
}
