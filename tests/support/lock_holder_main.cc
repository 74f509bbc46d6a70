// lock_holder: takes one lock in a process of its own and holds it, for tests
// of what other processes see (a crash, a pause, interoperation).
//   lock_holder ENDPOINTS PREFIX NAME TTL_SECONDS
// Prints "held <key> <fencing token>" once it holds the lock, then waits for
// SIGTERM (releases and exits 0) or SIGKILL; prints "lost" if the hold is lost.
#include <csignal>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>

#include "etcdlock/etcdlock.h"

namespace {
volatile std::sig_atomic_t stop_requested = 0;
}

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: lock_holder ENDPOINTS PREFIX NAME TTL_SECONDS\n";
    return 2;
  }
  std::signal(SIGTERM, [](int) { stop_requested = 1; });
  etcdlock::ManagerOptions options;
  options.endpoints.clear();
  std::stringstream endpoints(argv[1]);
  for (std::string endpoint; std::getline(endpoints, endpoint, ',');) options.endpoints.push_back(endpoint);
  options.prefix = argv[2];
  options.ttl = std::chrono::seconds(std::stoi(argv[4]));
  etcdlock::LockManager manager(options);
  auto lock = manager.get_lock(argv[3]);
  lock->lock();
  std::cout << "held " << lock->key() << " " << lock->fencing_token() << std::endl;
  const auto lost = lock->lost_token();
  while (!stop_requested && !lost.stop_requested()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (lost.stop_requested()) std::cout << "lost" << std::endl;
  lock->unlock();
  return 0;
}
