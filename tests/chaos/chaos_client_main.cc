// chaos_client: one contender of the chaos test. Until its time is up, it takes
// one of the names in turn (a lock, or the leadership of an election) and,
// holding it, increments a counter in etcd with a read and a guarded_put. It
// logs to OUTPUT, one line each:
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
//   chaos_client ENDPOINTS PREFIX LOCK_NAMES ELECTION_NAMES TTL_S SECONDS OUTPUT
// An election candidate's proposal is "pid:<pid>", so that the test can find
// the leader's process.
#include <dirent.h>
#include <unistd.h>

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

// What a turn holds: a lock or a leadership, behind one interface.
class Turn {
 public:
  virtual ~Turn() = default;
  // False when not acquired in time.
  virtual bool acquire() = 0;
  virtual std::int64_t fencing_token() const = 0;
  virtual std::stop_token lost_token() const = 0;
  virtual bool guarded_put(const std::string& key, const std::string& value) = 0;
  // Ends the hold; true when it had already ended involuntarily.
  virtual bool release() = 0;
};

class LockTurn final : public Turn {
 public:
  explicit LockTurn(std::shared_ptr<etcdlock::Lock> lock) : lock_(std::move(lock)) {}
  bool acquire() override { return lock_->try_lock_for(2s); }
  std::int64_t fencing_token() const override { return lock_->fencing_token(); }
  std::stop_token lost_token() const override { return lock_->lost_token(); }
  bool guarded_put(const std::string& key, const std::string& value) override { return lock_->guarded_put(key, value); }
  bool release() override {
    std::error_code ec;
    lock_->unlock(ec);
    return ec == etcdlock::errc::lock_expired;
  }

 private:
  std::shared_ptr<etcdlock::Lock> lock_;
};

class LeadershipTurn final : public Turn {
 public:
  LeadershipTurn(std::shared_ptr<etcdlock::Election> election, Steady::time_point give_up)
      : election_(std::move(election)), give_up_(give_up) {}
  bool acquire() override { return election_->campaign_for("pid:" + std::to_string(getpid()), 2s); }
  std::int64_t fencing_token() const override { return election_->fencing_token(); }
  std::stop_token lost_token() const override { return election_->lost_token(); }
  bool guarded_put(const std::string& key, const std::string& value) override {
    return election_->guarded_put(key, value);
  }
  bool release() override {
    const bool was_leader = election_->is_leader();
    // A resign that cannot reach etcd keeps the leadership: again until it
    // gets through or the leadership is lost.
    for (;;) {
      try {
        election_->resign();
        break;
      } catch (const etcdlock::Error&) {
        if (Steady::now() > give_up_) break;
        std::this_thread::sleep_for(100ms);
      }
    }
    return !was_leader;
  }

 private:
  std::shared_ptr<etcdlock::Election> election_;
  Steady::time_point give_up_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 8) {
    std::cerr << "usage: chaos_client ENDPOINTS PREFIX LOCK_NAMES ELECTION_NAMES TTL_S SECONDS OUTPUT\n";
    return 2;
  }
  etcdlock::ManagerOptions options;
  options.endpoints = split(argv[1]);
  options.prefix = argv[2];
  const auto lock_names = split(argv[3]);
  const auto election_names = split(argv[4]);
  options.ttl = std::chrono::seconds(std::stoi(argv[5]));
  options.command_timeout = 1s;
  options.dial_timeout = 10s;
  options.log_sink = etcdlock::stderr_log_sink(etcdlock::LogLevel::error);
  const auto until = Steady::now() + std::chrono::seconds(std::stoi(argv[6]));
  std::ofstream out(argv[7], std::ios::app);
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
    std::vector<std::pair<std::string, std::unique_ptr<Turn>>> turns;
    for (const auto& name : lock_names) {
      turns.emplace_back(name, std::make_unique<LockTurn>(manager->get_lock(name, {.retry_interval = 50ms})));
    }
    for (const auto& name : election_names) {
      turns.emplace_back(name, std::make_unique<LeadershipTurn>(manager->get_election(name), until + 30s));
    }
    for (std::size_t next = random() % turns.size(); Steady::now() < until; ++next) {
      auto& [name, turn] = turns[next % turns.size()];
      const std::string counter = options.prefix + "-data/" + name;
      try {
        if (!turn->acquire()) continue;
      } catch (const etcdlock::Error&) {
        continue;  // unavailable for now: try again
      }
      const std::int64_t token = turn->fencing_token();
      const std::stop_token lost = turn->lost_token();
      log("acq " + name + " " + std::to_string(token));
      try {
        etcdserverpb::RangeRequest read;
        read.set_key(counter);
        const auto current = reader.range(read, Steady::now() + 1s);
        const long value = current.kvs_size() ? std::stol(current.kvs(0).value()) : 0;
        std::this_thread::sleep_for(std::chrono::milliseconds(random() % 20));
        const std::string next_value = std::to_string(value + 1);
        const std::string line = name + " " + std::to_string(token) + " " + next_value;
        log("try " + line);
        try {
          log((turn->guarded_put(counter, next_value) ? "inc " : "rej ") + line);
        } catch (const etcdlock::Error&) {
          // Unknown: the try stands alone.
        }
      } catch (const etcdlock::Error&) {
        // The read failed: no write was attempted.
      }
      if (turn->release()) {
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
