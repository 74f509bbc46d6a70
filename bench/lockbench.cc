// lockbench: etcdlock's benchmark, with the modes, flags and JSON output of
// the Go peer (../shared/peers/go-mutex-bench), so that both can be run side
// by side against the same etcd.
//
//   uncontended  one thread: lock+unlock of one name
//   contended    N managers (each with its own lease and connection, as N
//                processes) on one name; checks overlap and a counter
//   handoff      contended, reporting the time from a holder's unlock to the
//                next holder's return
//   manykeys     N threads, one manager, a name each
//   reentrant    relock+unlock by the holding thread
//   scale        one manager holding K locks: time per acquire, memory per
//                held lock, and the leases and streams etcd sees
//   raw          the Txn and DeleteRange of one lock cycle through the same
//                gRPC client with no lock logic: the floor of a cycle
//   semaphore    N managers on one semaphore of --limit permits
//   rwlock       N managers on one read-write lock, --writers-percent of
//                the turns writing
//   multilock    N managers (8 by default) each holding two of three names at
//                once, the pairs overlapping in both orders: with a MultiLock
//                (one enqueue), with its async_lock, then with two Locks taken
//                in a fixed order (--variant: one of them alone); checks
//                overlap per name, reports Txns per acquisition
//   asynccontended  as contended, each manager acquiring with Lock::async_lock
//                in a chain of handlers (no thread of the benchmark waits)
//   asyncwait    --keys pending asynchronous acquisitions on one manager, on
//                --keys names and then on one name, behind holders that a
//                raw lease keeps: threads and memory per pending waiter, the
//                time to queue them and to serve them all once the holders go
#include <absl/synchronization/mutex.h>
#include <dirent.h>
#include <malloc.h>
#include <unistd.h>
#include <CLI/CLI.hpp>
#include <array>
#include <atomic>
#include <barrier>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <future>
#include <iostream>
#include <latch>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <shared_mutex>
#include <thread>

#include "etcd/client.h"
#include "etcdlock/etcdlock.h"
#include "keys/key_layout.h"
#include "keys/queue_requests.h"
#include "server_metrics.h"
#include "stats.h"
#include "thread_switches.h"

namespace etcdlock::bench {
namespace {

using Steady = std::chrono::steady_clock;
using nlohmann::json;

struct Config {
  std::vector<std::string> endpoints{"127.0.0.1:2379"};
  std::string mode = "uncontended";
  int clients = 1;
  int ops = 200;
  int ttl = 10;
  int warmup = 5;
  int keys = 10000;
  long hold_us = 0;
  int limit = 2;             // semaphore: permits held at once
  int writers_percent = 20;  // rwlock: the share of writes
  bool metrics = true;       // ManagerOptions::metrics, to measure what counting costs
  // abseil's Mutex deadlock detection, which Debian's build leaves on and
  // gRPC's every lock pays: the program's own choice, as a user's main() may make it.
  bool abseil_deadlock_detection = true;
  std::string prefix;
  std::string label;
  std::string variant = "all";  // multilock: which way of taking two names, or all three
};

struct Errors {
  std::atomic<long> count{0};
  std::mutex mu;
  std::string first;
  void add(const std::string& what) {
    ++count;
    std::lock_guard lock(mu);
    if (first.empty()) first = what;
  }
};

ManagerOptions manager_options(const Config& config) {
  ManagerOptions options;
  options.endpoints = config.endpoints;
  options.prefix = config.prefix;
  options.ttl = std::chrono::seconds(config.ttl);
  options.metrics = config.metrics;
  options.log_sink = stderr_log_sink(LogLevel::error);
  return options;
}

double seconds_since(Steady::time_point start) { return std::chrono::duration<double>(Steady::now() - start).count(); }

// The timed part of a run. Its begin and end are marked on stderr, so that
// scripts/bench_measure.py can take this process's and etcd's CPU over the
// window alone: with 64 managers, their setup, warm-up and close cost about as
// much CPU as a third of the timed acquisitions.
class TimedWindow {
 public:
  TimedWindow() {
    mark("begins");
    start_ = Steady::now();
  }
  TimedWindow(const TimedWindow&) = delete;
  TimedWindow& operator=(const TimedWindow&) = delete;
  // The window's length in seconds; the first call ends it.
  double end() {
    if (!elapsed_) {
      elapsed_ = seconds_since(start_);
      mark("ends");
    }
    return *elapsed_;
  }

 private:
  static void mark(const char* what) {
    std::fprintf(stderr, "lockbench: timed window %s\n", what);
    std::fflush(stderr);
  }
  Steady::time_point start_;
  std::optional<double> elapsed_;
};

long rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

json base_result(const Config& config) {
  return {{"implementation", "etcdlock"},  {"client_version", kVersion},
          {"label", config.label},         {"mode", config.mode},
          {"endpoints", config.endpoints}, {"clients", config.clients},
          {"ops_per_client", config.ops},  {"ttl_s", config.ttl},
          {"metrics", config.metrics},     {"abseil_deadlock_detection", config.abseil_deadlock_detection}};
}

// The threads as the run began: finish() reports what each woke since.
std::map<pid_t, ThreadSwitches> threads_at_start;

void finish(json& result, long ops, double elapsed, const Errors& errors) {
  result["ops"] = ops;
  result["client_switches_by_thread_per_op"] = switches_by_thread_per_op(threads_at_start, ops);
  result["errors"] = errors.count.load();
  if (!errors.first.empty()) result["first_error"] = errors.first;
  result["elapsed_s"] = round3(elapsed);
  result["ops_per_s"] = std::round(static_cast<double>(ops) / elapsed * 10) / 10;
}

void warm_up(Lock& lock, int cycles) {
  for (int i = 0; i < cycles; ++i) {
    lock.lock();
    lock.unlock();
  }
}

// `ops` lock+unlock cycles, each timed; a failed lock counts as an error.
void timed_cycles(Lock& lock, int ops, Errors& errors, std::vector<Duration>& lock_times,
                  std::vector<Duration>& unlock_times) {
  for (int i = 0; i < ops; ++i) {
    const auto t0 = Steady::now();
    try {
      lock.lock();
    } catch (const Error& error) {
      errors.add(error.what());
      continue;
    }
    const auto t1 = Steady::now();
    lock.unlock();
    lock_times.push_back(t1 - t0);
    unlock_times.push_back(Steady::now() - t1);
  }
}

// One name, one thread, lock then unlock.
json run_uncontended(const Config& config) {
  LockManager manager(manager_options(config));
  auto lock = manager.get_lock("lock");
  warm_up(*lock, config.warmup);
  std::vector<Duration> lock_times, unlock_times;
  Errors errors;
  TimedWindow window;
  timed_cycles(*lock, config.ops, errors, lock_times, unlock_times);
  json result = base_result(config);
  finish(result, static_cast<long>(lock_times.size()), window.end(), errors);
  result["lock_ms"] = summarize(lock_times);
  result["unlock_ms"] = summarize(unlock_times);
  return result;
}

// What the contenders of one name share: the checks that no two hold at once
// and that no update is lost, and the time of the last release.
struct Contention {
  std::atomic<int> holder{0};
  std::atomic<long> overlaps{0}, counter{0}, acquisitions{0};
  std::atomic<Steady::rep> last_release{0};
};

// One contender's samples.
struct ContenderTimes {
  std::vector<Duration> waits, handoffs, unlocks;
};

// `ops` turns of one contender: lock, a critical section that notices
// overlap and lost updates, unlock.
void contend(Lock& lock, const Config& config, Contention& shared, ContenderTimes& times, Errors& errors) {
  for (int i = 0; i < config.ops; ++i) {
    const auto t0 = Steady::now();
    try {
      lock.lock();
    } catch (const Error& error) {
      errors.add(error.what());
      continue;
    }
    const auto t1 = Steady::now();
    ++shared.acquisitions;
    times.waits.push_back(t1 - t0);
    const auto released = shared.last_release.load();
    if (released != 0 && t0.time_since_epoch().count() < released) {
      times.handoffs.push_back(t1.time_since_epoch() - Duration(released));
    }
    int expected = 0;
    if (!shared.holder.compare_exchange_strong(expected, 1)) ++shared.overlaps;
    const long seen = shared.counter.load();
    if (config.hold_us > 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(config.hold_us));
    } else {
      std::this_thread::yield();
    }
    shared.counter.store(seen + 1);
    shared.holder.store(0);
    const auto t2 = Steady::now();
    shared.last_release.store(t2.time_since_epoch().count());
    lock.unlock();
    times.unlocks.push_back(Steady::now() - t2);
  }
}

// N managers on one name, each as a separate process would be.
json run_contended(const Config& config) {
  std::vector<std::unique_ptr<LockManager>> managers;
  std::vector<std::shared_ptr<Lock>> locks;
  for (int i = 0; i < config.clients; ++i) {
    managers.push_back(std::make_unique<LockManager>(manager_options(config)));
    locks.push_back(managers.back()->get_lock("lock"));
    // Untimed: connects and warms up, as the peer sets up its sessions.
    locks.back()->lock();
    locks.back()->unlock();
  }
  Contention shared;
  std::vector<ContenderTimes> times(static_cast<std::size_t>(config.clients));
  Errors errors;
  std::barrier start_line(config.clients + 1);
  std::vector<std::thread> workers;
  for (int id = 0; id < config.clients; ++id) {
    workers.emplace_back([&, id] {
      start_line.arrive_and_wait();
      contend(*locks[id], config, shared, times[id], errors);
    });
  }
  const auto before = server_counts(config.endpoints.front());
  start_line.arrive_and_wait();
  TimedWindow window;
  for (auto& worker : workers) worker.join();
  const double elapsed = window.end();
  const auto after = server_counts(config.endpoints.front());
  auto all = [&](std::vector<Duration> ContenderTimes::*samples) {
    std::vector<Duration> merged;
    for (const auto& one : times) merged.insert(merged.end(), (one.*samples).begin(), (one.*samples).end());
    return merged;
  };
  json result = base_result(config);
  const long acquisitions = shared.acquisitions.load();
  finish(result, acquisitions, elapsed, errors);
  result["lock_ms"] = summarize(all(&ContenderTimes::waits));
  result["unlock_ms"] = summarize(all(&ContenderTimes::unlocks));
  result["handoff_ms"] = summarize(all(&ContenderTimes::handoffs));
  result["hold_us"] = config.hold_us;
  result["sessions"] = config.clients;
  // Every watch event etcd sent during the run, per acquisition: what a
  // hand-over costs in notifications, whatever the number of waiters.
  result["server_events_per_acquisition"] =
      acquisitions > 0 ? round3((after.events_sent - before.events_sent) / static_cast<double>(acquisitions)) : 0.0;
  result["overlaps"] = shared.overlaps.load();
  result["counter"] = shared.counter.load();
  result["lost_updates"] = acquisitions - shared.counter.load();
  result["correct"] = shared.overlaps.load() == 0 && acquisitions == shared.counter.load();
  return result;
}

// One manager, N threads, a name each.
json run_manykeys(const Config& config) {
  LockManager manager(manager_options(config));
  std::vector<std::vector<Duration>> lock_times(config.clients), unlock_times(config.clients);
  Errors errors;
  std::barrier start_line(config.clients + 1);
  std::vector<std::thread> workers;
  for (int id = 0; id < config.clients; ++id) {
    workers.emplace_back([&, id] {
      auto lock = manager.get_lock("k" + std::to_string(id));
      warm_up(*lock, config.warmup);
      start_line.arrive_and_wait();
      timed_cycles(*lock, config.ops, errors, lock_times[id], unlock_times[id]);
    });
  }
  start_line.arrive_and_wait();
  TimedWindow window;
  for (auto& worker : workers) worker.join();
  const double elapsed = window.end();
  std::vector<Duration> locks_all, unlocks_all;
  for (int id = 0; id < config.clients; ++id) {
    locks_all.insert(locks_all.end(), lock_times[id].begin(), lock_times[id].end());
    unlocks_all.insert(unlocks_all.end(), unlock_times[id].begin(), unlock_times[id].end());
  }
  json result = base_result(config);
  finish(result, static_cast<long>(locks_all.size()), elapsed, errors);
  result["shared_session"] = true;
  result["lock_ms"] = summarize(locks_all);
  result["unlock_ms"] = summarize(unlocks_all);
  return result;
}

// Relock and unlock by the thread that holds the lock: no round trip.
json run_reentrant(const Config& config) {
  LockManager manager(manager_options(config));
  auto lock = manager.get_lock("lock");
  lock->lock();
  Errors errors;
  TimedWindow window;
  for (int i = 0; i < config.ops; ++i) {
    lock->lock();
    lock->unlock();
  }
  const double elapsed = window.end();
  lock->unlock();
  json result = base_result(config);
  finish(result, config.ops, elapsed, errors);
  return result;
}

// Turns of N managers (each as a separate process would be) on one name:
// `turn(id)` takes and gives back whatever the mode holds, and says whether
// it held it; the rest is timing and the checks.
template <class Turn>
json run_turns(const Config& config, Turn turn) {
  std::vector<std::vector<Duration>> cycles(static_cast<std::size_t>(config.clients));
  Errors errors;
  std::barrier start_line(config.clients + 1);
  std::vector<std::thread> workers;
  for (int id = 0; id < config.clients; ++id) {
    workers.emplace_back([&, id] {
      start_line.arrive_and_wait();
      for (int i = 0; i < config.ops; ++i) {
        const auto t0 = Steady::now();
        try {
          turn(id, i);
          cycles[static_cast<std::size_t>(id)].push_back(Steady::now() - t0);
        } catch (const Error& error) {
          errors.add(error.what());
        }
      }
    });
  }
  start_line.arrive_and_wait();
  TimedWindow window;
  for (auto& worker : workers) worker.join();
  const double elapsed = window.end();
  std::vector<Duration> all;
  for (const auto& one : cycles) all.insert(all.end(), one.begin(), one.end());
  json result = base_result(config);
  finish(result, static_cast<long>(all.size()), elapsed, errors);
  result["cycle_ms"] = summarize(all);
  return result;
}

// Holding a permit: how many hold at once, at most.
struct Occupancy {
  std::atomic<int> now{0}, most{0};
  void enter() {
    const int inside = ++now;
    for (int seen = most.load(); inside > seen && !most.compare_exchange_weak(seen, inside);) {
    }
  }
  void leave() { --now; }
};

void hold_for(const Config& config) {
  if (config.hold_us > 0) {
    std::this_thread::sleep_for(std::chrono::microseconds(config.hold_us));
  } else {
    std::this_thread::yield();
  }
}

json run_semaphore(const Config& config) {
  std::vector<std::unique_ptr<LockManager>> managers;
  std::vector<std::shared_ptr<Semaphore>> semaphores;
  for (int i = 0; i < config.clients; ++i) {
    managers.push_back(std::make_unique<LockManager>(manager_options(config)));
    semaphores.push_back(managers.back()->get_semaphore("semaphore", config.limit));
    semaphores.back()->acquire_permit().release();  // untimed: connects and warms up
  }
  Occupancy occupancy;
  auto result = run_turns(config, [&](int id, int) {
    auto permit = semaphores[static_cast<std::size_t>(id)]->acquire_permit();
    occupancy.enter();
    hold_for(config);
    occupancy.leave();
    permit.release();
  });
  result["limit"] = config.limit;
  result["most_held_at_once"] = occupancy.most.load();
  result["correct"] = occupancy.most.load() <= config.limit;
  return result;
}

json run_rwlock(const Config& config) {
  std::vector<std::unique_ptr<LockManager>> managers;
  std::vector<std::shared_ptr<SharedLock>> locks;
  for (int i = 0; i < config.clients; ++i) {
    managers.push_back(std::make_unique<LockManager>(manager_options(config)));
    locks.push_back(managers.back()->get_shared_lock("rwlock"));
    locks.back()->lock_shared();  // untimed: connects and warms up
    locks.back()->unlock_shared();
  }
  Occupancy readers, writers;
  std::atomic<long> violations{0}, writes{0};
  auto result = run_turns(config, [&](int id, int turn) {
    auto& lock = *locks[static_cast<std::size_t>(id)];
    if ((id * 7 + turn * 13) % 100 < config.writers_percent) {
      std::unique_lock guard(lock);
      writers.enter();
      if (writers.now.load() != 1 || readers.now.load() != 0) ++violations;
      hold_for(config);
      writers.leave();
      ++writes;
    } else {
      std::shared_lock guard(lock);
      readers.enter();
      if (writers.now.load() != 0) ++violations;
      hold_for(config);
      readers.leave();
    }
  });
  result["writers_percent"] = config.writers_percent;
  result["writes"] = writes.load();
  result["most_readers_at_once"] = readers.most.load();
  result["violations"] = violations.load();
  result["correct"] = violations.load() == 0;
  return result;
}

// The etcd calls the managers made, summed, by call ("Txn", "Range").
std::map<std::string, std::uint64_t> requests_of(const std::vector<std::unique_ptr<LockManager>>& managers) {
  std::map<std::string, std::uint64_t> total;
  for (const auto& manager : managers) {
    for (const auto& [call, count] : manager->metrics().requests) total[call] += count;
  }
  return total;
}

// How a multilock run takes its two names.
enum class PairBy {
  multi_lock,        // one MultiLock per pair, lock()
  async_multi_lock,  // the same MultiLock, a chain of async_lock() per manager
  locks_in_order,    // two Locks, in the order of the sorted names
};

// Two names of three per turn, for N managers: manager i takes the pair
// (i mod 3, i+1 mod 3), named in ascending order by even managers and in
// descending order by odd ones, as `by` says (two Locks taken in the order of
// the sorted names is what avoids a deadlock without a multi-lock). Every
// turn checks that no name has two holders.
json run_multilock_variant(const Config& config, PairBy by) {
  const bool multi = by != PairBy::locks_in_order;
  static const std::array<std::string_view, 3> kNames{"a", "b", "c"};
  std::vector<std::unique_ptr<LockManager>> managers;
  std::vector<std::shared_ptr<MultiLock>> multis;
  std::vector<std::array<std::shared_ptr<Lock>, 2>> pairs;
  for (int i = 0; i < config.clients; ++i) {
    managers.push_back(std::make_unique<LockManager>(manager_options(config)));
    auto first = kNames[static_cast<std::size_t>(i % 3)];
    auto second = kNames[static_cast<std::size_t>((i + 1) % 3)];
    if (i % 2 == 1) std::swap(first, second);
    if (multi) {
      multis.push_back(managers.back()->get_multi_lock({first, second}));
      multis.back()->lock();  // untimed: connects and warms up
      multis.back()->unlock();
    } else {
      if (second < first) std::swap(first, second);  // the fixed order
      pairs.push_back({managers.back()->get_lock(first), managers.back()->get_lock(second)});
      for (auto& lock : pairs.back()) {
        lock->lock();
        lock->unlock();
      }
    }
  }
  std::array<Occupancy, 3> holders;
  std::atomic<long> overlaps{0};
  const auto enter = [&](const std::vector<std::string>& names) {
    for (const auto& name : names) {
      auto& holder = holders[static_cast<std::size_t>(name[0] - 'a')];
      holder.enter();
      if (holder.now.load() != 1) ++overlaps;
    }
    hold_for(config);
    for (const auto& name : names) holders[static_cast<std::size_t>(name[0] - 'a')].leave();
  };
  const auto before = requests_of(managers);
  const auto server_before = server_counts(config.endpoints.front());
  json result;
  if (by == PairBy::async_multi_lock) {
    // One chain per manager, as asynccontended: each handler takes its turn
    // and asks again; no thread waits.
    Errors errors;
    std::latch done(config.clients);
    std::atomic<long> acquisitions{0};
    std::function<void(std::size_t, int)> turn = [&](std::size_t index, int left) {
      if (left == 0) return done.count_down();
      multis[index]->async_lock([&, index, left](std::error_code ec, MultiLockHold hold) {
        if (ec) {
          errors.add(ec.message());
        } else {
          enter(hold.names());
          ++acquisitions;
          hold.release();
        }
        turn(index, left - 1);
      });
    };
    TimedWindow window;
    for (std::size_t index = 0; index < multis.size(); ++index) turn(index, config.ops);
    done.wait();
    const double elapsed = window.end();
    result = base_result(config);
    finish(result, acquisitions.load(), elapsed, errors);
  } else {
    result = run_turns(config, [&](int id, int) {
      const auto index = static_cast<std::size_t>(id);
      if (multi) {
        std::lock_guard guard(*multis[index]);
        enter(multis[index]->names());
      } else {
        std::lock_guard first(*pairs[index][0]);
        std::lock_guard second(*pairs[index][1]);
        enter({pairs[index][0]->name(), pairs[index][1]->name()});
      }
    });
  }
  const auto after = requests_of(managers);
  const auto server_after = server_counts(config.endpoints.front());
  const double acquisitions = std::max<double>(1, result["ops"].get<double>());
  const auto per_acquisition = [&](const std::string& call) {
    const auto was = before.contains(call) ? before.at(call) : 0;
    const auto now = after.contains(call) ? after.at(call) : 0;
    return std::round(static_cast<double>(now - was) / acquisitions * 100) / 100;
  };
  result["txn_per_acquisition"] = per_acquisition("Txn");
  result["range_per_acquisition"] = per_acquisition("Range");
  // Writes, as etcd counts them (the benchmark's etcd is one member).
  result["writes_per_acquisition"] =
      std::round((server_after.proposals_committed - server_before.proposals_committed) / acquisitions * 100) / 100;
  result["overlaps"] = overlaps.load();
  return result;
}

json run_multilock(const Config& config) {
  auto prefixed = [&](const std::string& variant) {
    Config each = config;
    each.prefix = config.prefix + "/" + variant;
    return each;
  };
  if (config.variant != "all") {
    // One variant alone, its figures at the top: what bench_measure.py
    // divides the program's CPU by.
    const auto by = config.variant == "multi"   ? PairBy::multi_lock
                    : config.variant == "async" ? PairBy::async_multi_lock
                                                : PairBy::locks_in_order;
    json result = run_multilock_variant(prefixed(config.variant), by);
    result["variant"] = config.variant;
    result["correct"] = result["overlaps"] == 0 && (by == PairBy::locks_in_order || result["errors"] == 0);
    return result;
  }
  json multi = run_multilock_variant(prefixed("multi"), PairBy::multi_lock);
  json async_multi = run_multilock_variant(prefixed("async"), PairBy::async_multi_lock);
  json ordered = run_multilock_variant(prefixed("ordered"), PairBy::locks_in_order);
  json result = base_result(config);
  result["multi_lock"] = multi;
  result["async_multi_lock"] = async_multi;
  result["two_locks_in_order"] = ordered;
  result["correct"] = multi["overlaps"] == 0 && async_multi["overlaps"] == 0 && ordered["overlaps"] == 0 &&
                      multi["errors"] == 0 && async_multi["errors"] == 0;
  return result;
}

// One manager holding K locks.
json run_scale(const Config& config) {
  const auto before = server_counts(config.endpoints.front());
  LockManager manager(manager_options(config));
  std::vector<std::shared_ptr<Lock>> held;
  held.reserve(static_cast<std::size_t>(config.keys));
  // Touch what every lock uses once, so the baseline holds gRPC's own buffers.
  {
    auto first = manager.get_lock("warm");
    first->lock();
    first->unlock();
  }
  const long rss_before = rss_bytes();
  const auto heap_before = static_cast<long>(mallinfo2().uordblks);
  const int bucket = std::max(1, config.keys / 10);
  std::vector<double> bucket_ms;  // mean acquire time per tenth of K
  Duration bucket_total{};
  Errors errors;
  TimedWindow window;
  for (int k = 0; k < config.keys; ++k) {
    auto lock = manager.get_lock("k" + std::to_string(k));
    const auto t0 = Steady::now();
    try {
      lock->lock();
    } catch (const Error& error) {
      errors.add(error.what());
      continue;
    }
    bucket_total += Steady::now() - t0;
    held.push_back(std::move(lock));
    if ((k + 1) % bucket == 0) {
      bucket_ms.push_back(round3(std::chrono::duration<double, std::milli>(bucket_total).count() / bucket));
      bucket_total = {};
    }
  }
  const double elapsed = window.end();
  const long rss_after = rss_bytes();
  const auto heap_after = static_cast<long>(mallinfo2().uordblks);
  const auto during = server_counts(config.endpoints.front());
  std::set<std::int64_t> leases;
  for (const auto& info : manager.list()) leases.insert(info.lease_id);
  json result = base_result(config);
  finish(result, static_cast<long>(held.size()), elapsed, errors);
  result["held_locks"] = held.size();
  result["acquire_ms_by_tenth"] = bucket_ms;
  result["rss_bytes_per_held_lock"] = held.empty() ? 0 : (rss_after - rss_before) / static_cast<long>(held.size());
  // malloc's bytes in use: what the locks hold, without the arenas' slack that the RSS shows.
  result["heap_bytes_per_held_lock"] = held.empty() ? 0 : (heap_after - heap_before) / static_cast<long>(held.size());
  result["distinct_leases_of_held_locks"] = leases.size();
  result["server_leases_granted"] = during.leases_granted - before.leases_granted;
  result["server_open_keepalive_streams"] = during.keepalive_streams - before.keepalive_streams;
  result["server_open_watch_streams"] = during.watch_streams - before.watch_streams;
  result["server_watchers"] = during.watchers - before.watchers;
  for (auto& lock : held) lock->unlock();
  return result;
}

// The requests of one lock cycle, through the same client, with no lock logic.
json run_raw(const Config& config) {
  namespace pb = ::etcdserverpb;
  detail::etcd::Client client(config.endpoints, std::chrono::seconds(10));
  const auto lease = client.lease_grant(config.ttl, Steady::now() + std::chrono::seconds(10)).id();
  const std::string dir = config.prefix + "/lock/";
  const std::string key = detail::queue_key(dir, lease);
  // The very Txn a lock sends to enqueue.
  const auto txn = detail::enqueue_txn({dir}, key, R"({"owner":"bench"})", lease, {1, false});
  pb::DeleteRangeRequest erase;
  erase.set_key(key);
  auto cycle = [&] {
    client.txn(txn, Steady::now() + std::chrono::seconds(10));
    client.delete_range(erase, Steady::now() + std::chrono::seconds(10));
  };
  for (int i = 0; i < config.warmup; ++i) cycle();
  std::vector<Duration> txns, deletes;
  Errors errors;
  TimedWindow window;
  for (int i = 0; i < config.ops; ++i) {
    try {
      const auto t0 = Steady::now();
      client.txn(txn, Steady::now() + std::chrono::seconds(10));
      const auto t1 = Steady::now();
      client.delete_range(erase, Steady::now() + std::chrono::seconds(10));
      txns.push_back(t1 - t0);
      deletes.push_back(Steady::now() - t1);
    } catch (const Error& error) {
      errors.add(error.what());
    }
  }
  json result = base_result(config);
  finish(result, static_cast<long>(txns.size()), window.end(), errors);
  // Named as the lock modes name theirs: the Txn is the lock, the delete the unlock.
  result["lock_ms"] = summarize(txns);
  result["unlock_ms"] = summarize(deletes);
  client.lease_revoke(lease, Steady::now() + std::chrono::seconds(10));
  return result;
}

// As contended, with asynchronous acquisitions: each manager runs a chain
// of handlers, each of which checks the critical section, releases and asks
// again; the benchmark's threads only wait for the chains to end.
json run_async_contended(const Config& config) {
  std::vector<std::unique_ptr<LockManager>> managers;
  std::vector<std::shared_ptr<Lock>> locks;
  for (int i = 0; i < config.clients; ++i) {
    managers.push_back(std::make_unique<LockManager>(manager_options(config)));
    locks.push_back(managers.back()->get_lock("lock"));
    locks.back()->lock();
    locks.back()->unlock();
  }
  Contention shared;
  Errors errors;
  std::latch done(config.clients);
  std::vector<Duration> waits;
  std::mutex waits_mu;
  // One chain per manager: `left` turns to go.
  std::function<void(int, int)> turn = [&](int id, int left) {
    if (left == 0) {
      done.count_down();
      return;
    }
    const auto asked = Steady::now();
    locks[id]->async_lock([&, id, left, asked](std::error_code ec, LockHold hold) {
      if (ec) {
        errors.add(ec.message());
      } else {
        {
          std::lock_guard lock(waits_mu);
          waits.push_back(Steady::now() - asked);
        }
        ++shared.acquisitions;
        int expected = 0;
        if (!shared.holder.compare_exchange_strong(expected, 1)) ++shared.overlaps;
        const long seen = shared.counter.load();
        std::this_thread::yield();
        shared.counter.store(seen + 1);
        shared.holder.store(0);
        hold.release();
      }
      turn(id, left - 1);
    });
  };
  const auto before = server_counts(config.endpoints.front());
  TimedWindow window;
  for (int id = 0; id < config.clients; ++id) turn(id, config.ops);
  done.wait();
  const double elapsed = window.end();
  const auto after = server_counts(config.endpoints.front());
  json result = base_result(config);
  const long acquisitions = shared.acquisitions.load();
  finish(result, acquisitions, elapsed, errors);
  result["lock_ms"] = summarize(waits);
  result["sessions"] = config.clients;
  result["server_events_per_acquisition"] =
      acquisitions > 0 ? round3((after.events_sent - before.events_sent) / static_cast<double>(acquisitions)) : 0.0;
  result["overlaps"] = shared.overlaps.load();
  result["counter"] = shared.counter.load();
  result["lost_updates"] = acquisitions - shared.counter.load();
  result["correct"] = shared.overlaps.load() == 0 && acquisitions == shared.counter.load();
  return result;
}

std::size_t thread_count() {
  std::size_t count = 0;
  if (DIR* dir = opendir("/proc/self/task")) {
    while (const dirent* entry = readdir(dir)) {
      if (entry->d_name[0] != '.') ++count;
    }
    closedir(dir);
  }
  return count;
}

// --keys asynchronous acquisitions that wait at once on one manager.
json run_async_wait(const Config& config) {
  namespace pb = ::etcdserverpb;
  const auto deadline = [] { return Steady::now() + std::chrono::seconds(30); };
  detail::etcd::Client raw(config.endpoints, std::chrono::seconds(30));
  const auto count_keys = [&] {
    pb::RangeRequest count;
    count.set_key(config.prefix + "/");
    count.set_range_end(detail::prefix_range_end(config.prefix + "/"));
    count.set_count_only(true);
    return raw.range(count, deadline()).count();
  };
  // Holders as etcdctl's would be: a key per name on a lease of their own,
  // put 100 to a Txn; revoking the lease lets every waiter in at once.
  const auto hold_names = [&](const std::vector<std::string>& names) {
    const auto lease = raw.lease_grant(60, deadline()).id();
    for (std::size_t first = 0; first < names.size(); first += 100) {
      pb::TxnRequest puts;
      for (std::size_t i = first; i < std::min(names.size(), first + 100); ++i) {
        auto* put = puts.add_success()->mutable_request_put();
        put->set_key(detail::queue_key(detail::queue_dir(config.prefix, names[i]), lease));
        put->set_lease(lease);
      }
      raw.txn(puts, deadline());
    }
    return lease;
  };
  LockManager manager(manager_options(config));
  {  // every thread of the manager started, the asynchronous ones included
    auto warm = manager.get_lock("warm");
    std::promise<void> warmed;
    warm->async_lock([&](std::error_code, LockHold hold) {
      hold.release();
      warmed.set_value();
    });
    warmed.get_future().wait();
  }
  json result = base_result(config);
  result["pending"] = config.keys;
  Errors errors;
  const auto phase = [&](const std::string& label, const std::vector<std::string>& names, long keys_when_queued) {
    const auto lease = hold_names(std::vector<std::string>(names.begin(), names.end()));
    std::vector<std::shared_ptr<Lock>> locks;
    for (const auto& name : names) locks.push_back(manager.get_lock(name));
    const auto threads_before = thread_count();
    const long rss_before = rss_bytes();
    // The heap in use: what the waiters hold, whatever the allocator kept
    // from earlier (RSS does not shrink when memory is freed, so a second
    // phase's RSS growth says little).
    const auto heap_before = static_cast<long>(mallinfo2().uordblks);
    std::atomic<long> served{0};
    std::mutex mu;
    std::condition_variable all_served;
    const auto asked = Steady::now();
    for (int i = 0; i < config.keys; ++i) {
      locks[static_cast<std::size_t>(i) % locks.size()]->async_lock([&](std::error_code ec, LockHold hold) {
        if (ec) errors.add(ec.message());
        hold.release();
        if (++served == config.keys) {
          std::lock_guard lock(mu);
          all_served.notify_all();
        }
      });
    }
    while (count_keys() < keys_when_queued) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const double queued_s = seconds_since(asked);
    const auto threads_pending = thread_count();
    const long rss_pending = rss_bytes();
    const auto heap_pending = static_cast<long>(mallinfo2().uordblks);
    const auto released = Steady::now();
    raw.lease_revoke(lease, deadline());
    {
      std::unique_lock lock(mu);
      all_served.wait(lock, [&] { return served.load() == config.keys; });
    }
    const double served_s = seconds_since(released);
    result[label] = {{"threads_before", threads_before},
                     {"threads_while_pending", threads_pending},
                     {"rss_bytes_per_pending_waiter", (rss_pending - rss_before) / config.keys},
                     {"heap_bytes_per_pending_waiter", (heap_pending - heap_before) / config.keys},
                     {"queue_s", round3(queued_s)},
                     {"serve_all_s", round3(served_s)},
                     {"served_per_s", std::round(config.keys / served_s)}};
  };
  TimedWindow window;
  std::vector<std::string> many;
  for (int i = 0; i < config.keys; ++i) many.push_back("n" + std::to_string(i));
  // Each name: its holder and our waiter.
  phase("names", many, 2L * config.keys);
  // One name: its holder and the first waiter in etcd, the others in the turn.
  phase("one_name", {"one"}, 2);
  // ops: the acquisitions served in both phases, over the whole run.
  finish(result, config.keys * 2L, window.end(), errors);
  return result;
}

}  // namespace
}  // namespace etcdlock::bench

int main(int argc, char** argv) {
  using namespace etcdlock::bench;
  Config config;
  std::string endpoints = "127.0.0.1:2379";
  CLI::App app{"etcdlock's lock benchmark; one JSON line per run"};
  app.add_option("--endpoints", endpoints, "comma-separated etcd endpoints");
  app.add_option(
         "--mode", config.mode,
         "uncontended | contended | handoff | manykeys | reentrant | scale | raw | semaphore | rwlock | multilock | "
         "asynccontended | asyncwait")
      ->check(CLI::IsMember({"uncontended", "contended", "handoff", "manykeys", "reentrant", "scale", "raw",
                             "semaphore", "rwlock", "multilock", "asynccontended", "asyncwait"}));
  app.add_option("--clients", config.clients, "managers (contended, handoff) or threads (manykeys)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--ops", config.ops, "cycles per client")->check(CLI::Range(1, 100'000'000));
  app.add_option("--ttl", config.ttl, "lease TTL in seconds")->check(CLI::Range(1, 86400));
  app.add_option("--warmup", config.warmup, "untimed cycles per client first")->check(CLI::Range(0, 100000));
  app.add_option("--keys", config.keys, "locks held at once (scale), waiters pending at once (asyncwait)")
      ->check(CLI::Range(1, 1'000'000));
  app.add_option("--hold-us", config.hold_us, "time in the critical section (contended)")
      ->check(CLI::Range(0L, 10'000'000L));
  app.add_option("--limit", config.limit, "permits of the semaphore")->check(CLI::Range(1, 1024));
  app.add_option("--writers-percent", config.writers_percent, "rwlock: the share of writing turns")
      ->check(CLI::Range(0, 100));
  app.add_option("--variant", config.variant, "multilock: multi | async | ordered alone (default: all three)")
      ->check(CLI::IsMember({"all", "multi", "async", "ordered"}));
  app.add_option("--prefix", config.prefix, "key prefix (default /lockbench/<mode>/<pid>-<time>)");
  app.add_option("--label", config.label, "copied into the output");
  app.add_flag("!--no-metrics", config.metrics, "managers keep no metrics (ManagerOptions::metrics = false)");
  app.add_flag("!--no-abseil-deadlock-detection", config.abseil_deadlock_detection,
               "absl::SetMutexDeadlockDetectionMode(kIgnore) first, as an application's main() may");
  CLI11_PARSE(app, argc, argv);
  if (!config.abseil_deadlock_detection) absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  config.endpoints.clear();
  std::stringstream list(endpoints);
  for (std::string endpoint; std::getline(list, endpoint, ',');) config.endpoints.push_back(endpoint);
  if (config.prefix.empty()) {
    config.prefix = "/lockbench/" + config.mode + "/" + std::to_string(getpid()) + "-" +
                    std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
  }
  if (config.mode == "handoff" && config.clients < 2) config.clients = 2;
  if (config.mode == "multilock" && app.count("--clients") == 0) config.clients = 8;
  try {
    threads_at_start = thread_switches();
    nlohmann::json result;
    if (config.mode == "uncontended") result = run_uncontended(config);
    if (config.mode == "contended" || config.mode == "handoff") result = run_contended(config);
    if (config.mode == "manykeys") result = run_manykeys(config);
    if (config.mode == "reentrant") result = run_reentrant(config);
    if (config.mode == "scale") result = run_scale(config);
    if (config.mode == "raw") result = run_raw(config);
    if (config.mode == "semaphore") result = run_semaphore(config);
    if (config.mode == "rwlock") result = run_rwlock(config);
    if (config.mode == "multilock") result = run_multilock(config);
    if (config.mode == "asynccontended") result = run_async_contended(config);
    if (config.mode == "asyncwait") result = run_async_wait(config);
    std::cout << result.dump() << std::endl;
    if (result.contains("correct") && !result["correct"].get<bool>()) return 3;
    return 0;
  } catch (const std::exception& error) {
    std::cerr << "lockbench: " << error.what() << "\n";
    return 1;
  }
}
