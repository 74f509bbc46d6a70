// chaos_client: one contender of the chaos test. Until its time is up, it takes
// one of the names in turn (a lock, the leadership of an election, the write
// or read side of a shared lock, a permit of a semaphore, or two names at once
// through a multi-lock) and, holding it, does its work: a writer increments a
// counter in etcd with a read and a guarded_put (a multi-lock's holder, the
// counter of each of its names in turn); a reader checks that the counter does not change while its
// entry stands; a permit holder checks that no more permits than the limit
// stand at once. Some turns arm a lost reply (a write that commits while its
// reply never comes) at a random write of the library. It logs to OUTPUT, one
// line each:
//   acq NAME TOKEN         an acquisition (a multi-lock's: one line per name)
//   try NAME TOKEN VALUE   a guarded increment about to be sent
//   inc NAME TOKEN VALUE   ... that etcd committed
//   rej NAME TOKEN VALUE   ... that etcd refused: the hold was gone
//   A try with neither, as from a client killed in between or etcd
//   unreachable, has an unknown outcome.
//   read NAME TOKEN        a reader's check, done
//   permit NAME TOKEN N    a permit holder's check, done: N permits stood
//   lost NAME TOKEN        a hold that ended involuntarily, with its token fired
//                          (a multi-lock's: one line per name)
//   armed SITE             a lost reply armed for this turn
//   dropped N              replies dropped by the armed sites, in all
//   dropped_at SITE N      ... of which at SITE (each site with any)
//   violation WHAT         something that must never happen
//   threads BEFORE AFTER   threads of the process before the first manager and after the last
//   done
//   chaos_client ENDPOINTS PREFIX LOCKS ELECTIONS SHARED_LOCKS SEMAPHORES
//                MULTI_LOCK_NAMES LIMIT TTL_S SECONDS LOST_REPLY_PERCENT OUTPUT
// NAMES are comma-separated lists (possibly empty). MULTI_LOCK_NAMES are the
// names that multi-lock turns take two at a time (none, or at least two). An election candidate's
// proposal is "pid:<pid>", so that the test can find the leader's process.
#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <iostream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "etcd/client.h"
#include "etcd/lost_replies.h"
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

using etcdlock::detail::etcd::Client;
namespace pb = etcdserverpb;

// One read of several keys and directories at one revision.
pb::TxnResponse snapshot(Client& reader, const std::vector<std::pair<std::string, std::string>>& ranges) {
  pb::TxnRequest request;
  for (const auto& [key, range_end] : ranges) {
    auto* range = request.add_success()->mutable_request_range();
    range->set_key(key);
    range->set_range_end(range_end);
  }
  return reader.txn(request, Steady::now() + 1s, "chaos_snapshot");
}

std::string directory_end(std::string directory) {
  ++directory.back();  // the directory ends in '/': '0' sorts right after it
  return directory;
}

// What a turn holds, behind one interface.
class Turn {
 public:
  virtual ~Turn() = default;
  // False when not acquired in time.
  virtual bool acquire() = 0;
  // The names this hold (or the last attempt) takes, in the order the work
  // goes through them.
  virtual std::vector<std::string> names() const = 0;
  virtual std::int64_t fencing_token() const = 0;
  virtual std::stop_token lost_token() const = 0;
  // True when this hold increments the name's counter (an exclusive hold);
  // else check() does the hold's work.
  virtual bool increments() const { return true; }
  virtual bool guarded_put(const std::string& key, const std::string& value) = 0;
  // The work of a non-exclusive hold; throws etcdlock::Error when etcd cannot
  // be read, and logs what it checked.
  virtual void check(Client& /*reader*/, const std::function<void(const std::string&)>& /*log*/) {}
  // Ends the hold; true when it had already ended involuntarily.
  virtual bool release() = 0;
};

class LockTurn final : public Turn {
 public:
  explicit LockTurn(std::shared_ptr<etcdlock::Lock> lock) : lock_(std::move(lock)) {}
  bool acquire() override { return lock_->try_lock_for(2s); }
  std::vector<std::string> names() const override { return {lock_->name()}; }
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
  std::vector<std::string> names() const override { return {election_->name()}; }
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

// Either side of a shared lock, chosen at random for each turn. A writer
// increments the counter; a reader reads it at one revision after it is
// admitted and again before it unlocks: if it changed while the reader's
// entry stood in etcd the whole time, a writer wrote beside a reader.
class SharedTurn final : public Turn {
 public:
  SharedTurn(std::shared_ptr<etcdlock::SharedLock> lock, std::string counter, std::string directory)
      : lock_(std::move(lock)), counter_(std::move(counter)), directory_(std::move(directory)) {}
  bool acquire() override {
    shared_ = random_() % 2 == 0;
    return shared_ ? lock_->try_lock_shared_for(2s) : lock_->try_lock_for(2s);
  }
  std::vector<std::string> names() const override { return {lock_->name()}; }
  std::int64_t fencing_token() const override { return lock_->fencing_token(); }
  std::stop_token lost_token() const override { return lock_->lost_token(); }
  bool increments() const override { return !shared_; }
  bool guarded_put(const std::string& key, const std::string& value) override { return lock_->guarded_put(key, value); }
  void check(Client& reader, const std::function<void(const std::string&)>& log) override {
    const std::int64_t token = lock_->fencing_token();
    const auto before = counter_revision(snapshot(reader, {{counter_, ""}}));
    std::this_thread::sleep_for(std::chrono::milliseconds(random_() % 20));
    const auto after = snapshot(reader, {{counter_, ""}, {directory_, directory_end(directory_)}});
    bool entry_stands = false;
    for (const auto& kv : after.responses(1).response_range().kvs()) entry_stands |= kv.create_revision() == token;
    if (entry_stands && counter_revision(after) != before) {
      log("violation counter-written-beside-reader " + lock_->name() + " " + std::to_string(token) + " " +
          std::to_string(before) + " " + std::to_string(counter_revision(after)));
    }
    log("read " + lock_->name() + " " + std::to_string(token));
  }
  bool release() override {
    std::error_code ec;
    if (shared_) {
      lock_->unlock_shared(ec);
    } else {
      lock_->unlock(ec);
    }
    return ec == etcdlock::errc::lock_expired;
  }

 private:
  static std::int64_t counter_revision(const pb::TxnResponse& read) {
    const auto& kvs = read.responses(0).response_range().kvs();
    return kvs.empty() ? 0 : kvs[0].mod_revision();
  }

  std::shared_ptr<etcdlock::SharedLock> lock_;
  std::string counter_;
  std::string directory_;
  std::mt19937 random_{std::random_device{}()};
  bool shared_ = false;
};

// A permit of a semaphore. Its holder puts a marker named by its fencing
// token (guarded by the permit), then reads the semaphore's entries and all
// markers at one revision: markers whose permit's entry still stands are
// permits held at that revision, and there must never be more than the limit.
// The marker goes before the permit does.
class PermitTurn final : public Turn {
 public:
  PermitTurn(std::shared_ptr<etcdlock::Semaphore> semaphore, std::string markers, std::string directory)
      : semaphore_(std::move(semaphore)), markers_(std::move(markers)), directory_(std::move(directory)) {}
  bool acquire() override {
    permit_ = semaphore_->try_acquire_permit_for(2s);
    return permit_.has_value();
  }
  std::vector<std::string> names() const override { return {semaphore_->name()}; }
  std::int64_t fencing_token() const override { return permit_->fencing_token(); }
  std::stop_token lost_token() const override { return permit_->lost_token(); }
  bool increments() const override { return false; }
  bool guarded_put(const std::string& key, const std::string& value) override {
    return permit_->guarded_put(key, value);
  }
  void check(Client& reader, const std::function<void(const std::string&)>& log) override {
    const std::int64_t token = permit_->fencing_token();
    const std::string marker = markers_ + std::to_string(token);
    if (!permit_->guarded_put(marker, std::to_string(getpid()))) return;  // the permit is gone
    for (int look = 0; look < 2; ++look) {
      const auto read =
          snapshot(reader, {{directory_, directory_end(directory_)}, {markers_, directory_end(markers_)}});
      std::set<std::int64_t> standing;
      for (const auto& kv : read.responses(0).response_range().kvs()) standing.insert(kv.create_revision());
      std::int64_t held = 0;
      for (const auto& kv : read.responses(1).response_range().kvs()) {
        held += standing.count(std::stoll(kv.key().substr(markers_.size())));
      }
      if (held > semaphore_->limit()) {
        log("violation permits-beyond-limit " + semaphore_->name() + " " + std::to_string(held) + " at revision " +
            std::to_string(read.header().revision()));
      }
      if (look == 1) log("permit " + semaphore_->name() + " " + std::to_string(token) + " " + std::to_string(held));
      std::this_thread::sleep_for(std::chrono::milliseconds(random_() % 20));
    }
    pb::TxnRequest remove;
    remove.add_success()->mutable_request_delete_range()->set_key(marker);
    reader.txn(remove, Steady::now() + 1s, "chaos_marker");
  }
  bool release() override {
    std::error_code ec;
    permit_->release(ec);
    permit_.reset();
    return ec == etcdlock::errc::lock_expired;
  }

 private:
  std::shared_ptr<etcdlock::Semaphore> semaphore_;
  std::string markers_;
  std::string directory_;
  std::optional<etcdlock::Permit> permit_;
  std::mt19937 random_{std::random_device{}()};
};

// Two names at once through a MultiLock: each turn picks an ordered pair of
// the names at random, so that clients ask for overlapping sets in both
// orders ({m0, m1} beside {m1, m0} and {m1, m2}), and the work increments the
// counter of each name in that order, every write guarded by all the pair's
// keys. A name's counter then sees writers of every pair that contains it.
class MultiTurn final : public Turn {
 public:
  MultiTurn(etcdlock::LockManager& manager, const std::vector<std::string>& names) {
    for (const auto& first : names) {
      for (const auto& second : names) {
        if (first == second) continue;
        pairs_.push_back({first, second});
        locks_.push_back(manager.get_multi_lock({first, second}, {.retry_interval = 50ms}));
      }
    }
  }
  bool acquire() override {
    current_ = random_() % pairs_.size();
    return locks_[current_]->try_lock_for(2s);
  }
  std::vector<std::string> names() const override { return pairs_[current_]; }
  std::int64_t fencing_token() const override { return locks_[current_]->fencing_token(); }
  std::stop_token lost_token() const override { return locks_[current_]->lost_token(); }
  bool guarded_put(const std::string& key, const std::string& value) override {
    return locks_[current_]->guarded_put(key, value);
  }
  bool release() override {
    std::error_code ec;
    locks_[current_]->unlock(ec);
    return ec == etcdlock::errc::lock_expired;
  }

 private:
  std::vector<std::vector<std::string>> pairs_;
  std::vector<std::shared_ptr<etcdlock::MultiLock>> locks_;  // as pairs_
  std::size_t current_ = 0;
  std::mt19937 random_{std::random_device{}()};
};

// The library's writes whose replies a turn may lose.
constexpr std::string_view kLossSites[] = {
    etcdlock::detail::etcd::write_site::enqueue,       etcdlock::detail::etcd::write_site::release,
    etcdlock::detail::etcd::write_site::note,          etcdlock::detail::etcd::write_site::resign,
    etcdlock::detail::etcd::write_site::removal,       etcdlock::detail::etcd::write_site::guarded_write,
    etcdlock::detail::etcd::write_site::downgrade,     etcdlock::detail::etcd::write_site::multi_enqueue,
    etcdlock::detail::etcd::write_site::multi_release,
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 13) {
    std::cerr << "usage: chaos_client ENDPOINTS PREFIX LOCKS ELECTIONS SHARED_LOCKS SEMAPHORES MULTI_LOCK_NAMES LIMIT "
                 "TTL_S SECONDS LOST_REPLY_PERCENT OUTPUT\n";
    return 2;
  }
  etcdlock::ManagerOptions options;
  options.endpoints = split(argv[1]);
  options.prefix = argv[2];
  const auto lock_names = split(argv[3]);
  const auto election_names = split(argv[4]);
  const auto shared_names = split(argv[5]);
  const auto semaphore_names = split(argv[6]);
  const auto multi_lock_names = split(argv[7]);
  const std::int64_t limit = std::stoll(argv[8]);
  options.ttl = std::chrono::seconds(std::stoi(argv[9]));
  options.command_timeout = 1s;
  options.dial_timeout = 10s;
  options.log_sink = etcdlock::stderr_log_sink(etcdlock::LogLevel::error);
  const auto until = Steady::now() + std::chrono::seconds(std::stoi(argv[10]));
  const int lost_reply_percent = std::stoi(argv[11]);
  std::ofstream out(argv[12], std::ios::app);
  const std::function<void(const std::string&)> log = [&](const std::string& line) { out << line << std::endl; };
  auto counter_of = [&](const std::string& name) { return options.prefix + "-data/" + name; };
  auto directory_of = [&](const std::string& name) { return options.prefix + "/" + name + "/"; };

  const int threads_before = baseline_threads(options);
  {
    Client reader(options.endpoints, 1s);
    std::optional<etcdlock::LockManager> manager;
    while (!manager) {
      try {
        manager.emplace(options);
      } catch (const etcdlock::Error&) {
        if (Steady::now() > until) return 1;
      }
    }
    std::mt19937 random(std::random_device{}());
    std::vector<std::unique_ptr<Turn>> turns;
    for (const auto& name : lock_names) {
      turns.push_back(std::make_unique<LockTurn>(manager->get_lock(name, {.retry_interval = 50ms})));
    }
    for (const auto& name : election_names) {
      turns.push_back(std::make_unique<LeadershipTurn>(manager->get_election(name), until + 30s));
    }
    for (const auto& name : shared_names) {
      turns.push_back(std::make_unique<SharedTurn>(manager->get_shared_lock(name, {.retry_interval = 50ms}),
                                                   counter_of(name), directory_of(name)));
    }
    for (const auto& name : semaphore_names) {
      turns.push_back(std::make_unique<PermitTurn>(manager->get_semaphore(name, limit), counter_of(name) + "/",
                                                   directory_of(name)));
    }
    if (multi_lock_names.size() >= 2) turns.push_back(std::make_unique<MultiTurn>(*manager, multi_lock_names));
    for (std::size_t next = random() % turns.size(); Steady::now() < until; ++next) {
      auto& turn = turns[next % turns.size()];
      etcdlock::detail::etcd::LostReplies::disarm();  // what the last turn left unused
      if (static_cast<int>(random() % 100) < lost_reply_percent) {
        const auto site = kLossSites[random() % std::size(kLossSites)];
        etcdlock::detail::etcd::LostReplies::arm(site, options.prefix);
        log("armed " + std::string(site));
      }
      try {
        if (!turn->acquire()) continue;
      } catch (const etcdlock::Error&) {
        continue;  // unavailable for now: try again
      }
      const std::int64_t token = turn->fencing_token();
      const std::stop_token lost = turn->lost_token();
      const auto names = turn->names();
      for (const auto& name : names) log("acq " + name + " " + std::to_string(token));
      try {
        if (turn->increments()) {
          // A multi-lock's hold does each name's work, one after the other.
          for (const auto& name : names) {
            const std::string counter = counter_of(name);
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
          }
        } else {
          turn->check(reader, log);
        }
      } catch (const etcdlock::Error&) {
        // etcd could not be read: the work stops here.
      }
      if (turn->release()) {
        for (const auto& name : names) {
          if (lost.stop_requested()) {
            log("lost " + name + " " + std::to_string(token));
          } else {
            log("violation hold-ended-without-token " + name + " " + std::to_string(token));
          }
        }
      }
    }
    etcdlock::detail::etcd::LostReplies::disarm();
    manager->close();
  }
  int dropped = 0;
  for (const auto site : kLossSites) {
    const int here = etcdlock::detail::etcd::LostReplies::dropped(site);
    if (here > 0) log("dropped_at " + std::string(site) + " " + std::to_string(here));
    dropped += here;
  }
  log("dropped " + std::to_string(dropped));
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
