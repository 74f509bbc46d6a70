// election_candidate: campaigns in a process of its own, for tests of what
// other processes see (a crash of the leader, interoperation).
//   election_candidate ENDPOINTS PREFIX NAME TTL_SECONDS VALUE
// Prints "leader <key> <fencing token>" once elected, then waits for SIGTERM
// (resigns and exits 0) or SIGKILL; prints "lost" if the leadership is lost.
#include <csignal>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>

#include "etcdlock/etcdlock.h"

namespace {
volatile std::sig_atomic_t stop_requested = 0;
}

int main(int argc, char** argv) {
  if (argc != 6) {
    std::cerr << "usage: election_candidate ENDPOINTS PREFIX NAME TTL_SECONDS VALUE\n";
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
  auto election = manager.get_election(argv[3]);
  election->campaign(argv[5]);
  std::cout << "leader " << election->leader()->key << " " << election->fencing_token() << std::endl;
  const auto lost = election->lost_token();
  while (!stop_requested && !lost.stop_requested()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (lost.stop_requested()) std::cout << "lost" << std::endl;
  election->resign();
  return 0;
}
