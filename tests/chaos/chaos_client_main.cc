// chaos_client: one contender of the chaos test. Until its time is up, it takes
// one of the names in turn and, holding it, increments a counter in etcd with a
// read and a guarded_put. It logs to OUTPUT, one line each:
//   acq NAME TOKEN         an acquisition
//   try NAME TOKEN VALUE   a guarded increment about to be sent
//   inc NAME TOKEN VALUE   ... that etcd committed
//   rej NAME TOKEN VALUE   ... that etcd refused: the hold was gone
//   A try with neither, as from a client killed in between or etcd
//   unreachable, has an unknown outcome.
//   lost NAME TOKEN        a hold that ended involuntarily, with its token fired
//   violation WHAT         something that must never happen
//   threads BEFORE AFTER   threads of the process before the first manager and after the last
//   done
//   chaos_client ENDPOINTS PREFIX NAMES TTL_S SECONDS OUTPUT
#include <dirent.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include "etcd/client.h"
#include "etcdlock/etcdlock.h"

namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

std::vector<std::string> split(const std::string& list) {
  std::vector<std::string> parts;
  std::stringstream stream(list);
  for (std::string part; std::getline(stream, part, ',');) parts.push_back(part);
  return parts;
}

int thread_count() {
  int count = 0;
  if (DIR* tasks = opendir("/proc/self/task")) {
    while (const dirent* entry = readdir(tasks)) count += entry->d_name[0] != '.';
    closedir(tasks);
  }
  return count;
}

// Threads of gRPC's own, started by its first use, stay until exit: the
// baseline is taken after one manager has come and gone.
int baseline_threads(const etcdlock::ManagerOptions& options) {
  try {
    etcdlock::LockManager warm(options);
  } catch (const etcdlock::Error&) {
  }
  std::this_thread::sleep_for(200ms);
  return thread_count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) {
    std::cerr << "usage: chaos_client ENDPOINTS PREFIX NAMES TTL_S SECONDS OUTPUT\n";
    return 2;
  }
  etcdlock::ManagerOptions options;
  options.endpoints = split(argv[1]);
  options.prefix = argv[2];
  const auto names = split(argv[3]);
  options.ttl = std::chrono::seconds(std::stoi(argv[4]));
  options.command_timeout = 1s;
  options.dial_timeout = 10s;
  options.log_sink = etcdlock::stderr_log_sink(etcdlock::LogLevel::error);
  const auto until = Steady::now() + std::chrono::seconds(std::stoi(argv[5]));
  std::ofstream out(argv[6], std::ios::app);
  auto log = [&](const std::string& line) { out << line << std::endl; };

  const int threads_before = baseline_threads(options);
  {
    etcdlock::detail::etcd::Client reader(options.endpoints, 1s);
    std::optional<etcdlock::LockManager> manager;
    while (!manager) {
      try {
        manager.emplace(options);
      } catch (const etcdlock::Error&) {
        if (Steady::now() > until) return 1;
      }
    }
    std::mt19937 random(std::random_device{}());
    std::vector<std::shared_ptr<etcdlock::Lock>> locks;
    for (const auto& name : names) locks.push_back(manager->get_lock(name, {.retry_interval = 50ms}));
    for (std::size_t turn = random() % names.size(); Steady::now() < until; ++turn) {
      auto& lock = *locks[turn % names.size()];
      const std::string& name = names[turn % names.size()];
      const std::string counter = options.prefix + "-data/" + name;
      try {
        if (!lock.try_lock_for(2s)) continue;
      } catch (const etcdlock::Error&) {
        continue;  // unavailable for now: try again
      }
      const std::int64_t token = lock.fencing_token();
      const std::stop_token lost = lock.lost_token();
      log("acq " + name + " " + std::to_string(token));
      try {
        etcdserverpb::RangeRequest read;
        read.set_key(counter);
        const auto current = reader.range(read, Steady::now() + 1s);
        const long value = current.kvs_size() ? std::stol(current.kvs(0).value()) : 0;
        std::this_thread::sleep_for(std::chrono::milliseconds(random() % 20));
        const std::string next = std::to_string(value + 1);
        const std::string line = name + " " + std::to_string(token) + " " + next;
        log("try " + line);
        try {
          log((lock.guarded_put(counter, next) ? "inc " : "rej ") + line);
        } catch (const etcdlock::Error&) {
          // Unknown: the try stands alone.
        }
      } catch (const etcdlock::Error&) {
        // The read failed: no write was attempted.
      }
      std::error_code ec;
      lock.unlock(ec);
      if (ec == etcdlock::errc::lock_expired) {
        if (lost.stop_requested()) {
          log("lost " + name + " " + std::to_string(token));
        } else {
          log("violation hold-ended-without-token " + name + " " + std::to_string(token));
        }
      }
    }
    manager->close();
  }
  // Give the manager's threads a moment to be gone.
  int threads_after = thread_count();
  for (int i = 0; i < 50 && threads_after > threads_before; ++i) {
    std::this_thread::sleep_for(20ms);
    threads_after = thread_count();
  }
  log("threads " + std::to_string(threads_before) + " " + std::to_string(threads_after));
  log("done");
  return 0;
}
