// permit_holder: takes permits of a semaphore in a process of its own, for
// tests of what other processes see when it dies.
//   permit_holder ENDPOINTS PREFIX NAME LIMIT TTL_SECONDS COUNT
// Prints "held" once it holds COUNT permits, then waits until it is killed.
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "etcdlock/etcdlock.h"

int main(int argc, char** argv) {
  if (argc != 7) {
    std::cerr << "usage: permit_holder ENDPOINTS PREFIX NAME LIMIT TTL_SECONDS COUNT\n";
    return 2;
  }
  etcdlock::ManagerOptions options;
  options.endpoints.clear();
  std::stringstream endpoints(argv[1]);
  for (std::string endpoint; std::getline(endpoints, endpoint, ',');) options.endpoints.push_back(endpoint);
  options.prefix = argv[2];
  options.ttl = std::chrono::seconds(std::stoi(argv[5]));
  etcdlock::LockManager manager(options);
  auto semaphore = manager.get_semaphore(argv[3], std::stoll(argv[4]));
  std::vector<etcdlock::Permit> permits;
  for (int i = 0; i < std::stoi(argv[6]); ++i) permits.push_back(semaphore->acquire_permit());
  std::cout << "held" << std::endl;
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}
