// A replicated scheduler: every replica runs this, one of them leads and does
// the scheduler's ticks, and the others stand by. Unlike a replica that
// calls TryLock every second and never stops its tasks when it loses
// leadership, the leader stops within its lost token, before etcd can let
// another replica lead, and its writes are fenced.
//   ETCDLOCK_ENDPOINTS=127.0.0.1:2379 example_leader [TICKS]
#include <unistd.h>

#include <iostream>
#include <string>
#include <thread>

#include "etcdlock/etcdlock.h"
#include "example_options.h"

using namespace std::chrono_literals;

int main(int argc, char** argv) try {
  const int ticks = argc > 1 ? std::stoi(argv[1]) : 5;
  etcdlock::LockManager manager(example_options());
  auto election = manager.get_election("scheduler");
  const std::string me = "replica-" + std::to_string(getpid());

  // Who leads, as it changes; called on a notifier thread, one call at a time.
  auto observation = election->observe([](const std::optional<etcdlock::LeaderInfo>& leader) {
    std::cout << "leader: " << (leader ? leader->value : "none") << "\n";
  });

  election->campaign(me);  // blocks while another replica leads
  const std::stop_token lost = election->lost_token();
  for (int tick = 0; tick < ticks && !lost.stop_requested(); ++tick) {
    // The tick's effect is written only while this replica still leads.
    if (!election->guarded_put("/myapp/scheduler/last-tick", me + " " + std::to_string(tick))) break;
    std::this_thread::sleep_for(200ms);
  }
  if (lost.stop_requested()) {
    std::cerr << me << ": leadership lost; ticks stopped\n";
    return 1;
  }
  election->resign();  // the next replica leads within milliseconds
  std::cout << me << ": did its ticks, then resigned\n";
  return 0;
} catch (const etcdlock::Error& error) {
  std::cerr << error.what() << "\n";
  return 1;
}
