// The chaos test: contenders for three locks, an election, a shared lock, a
// semaphore and multi-locks (two of three more names at once, in either
// order) on a 3-member cluster, through leader kills, frozen members,
// frozen and killed clients, compactions followed by a member restart, force
// unlocks, and lost replies: each client reaches etcd through proxies of its
// own whose replies are held for a while and then released, and some of its
// turns lose the reply of one write after it committed (LostReplies). Whatever
// happens, the counter each exclusive name guards loses no update, the fencing
// tokens of each name increase in commit order (so no two holders or leaders
// wrote at once), no writer writes while a reader's entry stands, no more
// permits than the limit stand at once, every involuntary end of a hold fires
// its token, and nothing is left behind. ETCDLOCK_CHAOS_SECONDS sets the
// length (default 40).
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "child_process.h"
#include "lock_fixture.h"
#include "tcp_proxy.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;

constexpr int kClients = 6;
constexpr int kTtlSeconds = 2;
// Three locks, an election, the write side of a shared lock and the names of
// the multi-locks: the same counters, checks and faults for each.
const std::vector<std::string> kNames = {"alpha", "beta", "gamma", "leader", "rw", "m0", "m1", "m2"};
// Multi-lock turns hold two of these at once, a pair in either order.
const std::vector<std::string> kMultiLockNames = {"m0", "m1", "m2"};
const std::string kElection = "leader";
const std::string kSharedLock = "rw";
const std::string kSemaphore = "pool";
constexpr int kPermits = 2;
// Of the turns of each client, the share that loses one write's reply.
constexpr int kLostReplyPercent = 10;

class Chaos : public LockTest {
 protected:
  Chaos() : LockTest(3) {}

  int seconds() const {
    const char* wanted = std::getenv("ETCDLOCK_CHAOS_SECONDS");
    return wanted ? std::max(5, std::atoi(wanted)) : 40;
  }

  // The client that holds `name` now, found by the pid in its holder value
  // ("<host>:<pid>"), or nullptr.
  ChildProcess* holder_of(const std::string& name, std::vector<std::unique_ptr<ChildProcess>>& clients) {
    try {
      // A lock's owner is "<host>:<pid>"; a leader's proposal "pid:<pid>".
      std::string owner;
      if (name == kElection) {
        const auto leader = admin_->get_election(name)->leader();
        if (!leader) return nullptr;
        owner = leader->value;
      } else {
        const auto info = admin_->info(name);
        if (!info) return nullptr;
        owner = info->owner;
      }
      const pid_t pid = std::stoi(owner.substr(owner.rfind(':') + 1));
      for (auto& client : clients) {
        if (client->pid() == pid) return client.get();
      }
    } catch (const std::exception&) {
      // etcd is busy failing over: no target this time
    }
    return nullptr;
  }

  // Stops a client that holds a lock at the moment it is stopped, and says
  // which name it was caught holding; nullptr when none was.
  ChildProcess* freeze_a_holder(std::vector<std::unique_ptr<ChildProcess>>& clients, std::string& held) {
    for (int attempt = 0; attempt < 50; ++attempt) {
      // From a different name each time, so that every name's holders get frozen.
      const std::size_t first = next_name_++;
      for (std::size_t i = 0; i < kNames.size(); ++i) {
        const std::string& name = kNames[(first + i) % kNames.size()];
        if (name == kSharedLock) continue;  // its holders may be many readers
        ChildProcess* client = holder_of(name, clients);
        if (client == nullptr) continue;
        client->signal(SIGSTOP);
        if (holder_of(name, clients) == client) {  // still the holder, now frozen
          held = name;
          return client;
        }
        client->signal(SIGCONT);
      }
      std::this_thread::sleep_for(10ms);
    }
    return nullptr;
  }

  std::unique_ptr<LockManager> admin_ = manager();
  std::size_t next_name_ = 0;

  static std::string joined(const std::vector<std::string>& names) {
    std::string list;
    for (const auto& name : names) list += (list.empty() ? "" : ",") + name;
    return list;
  }

  // A client in slot `slot` reaches etcd through that slot's proxies.
  std::unique_ptr<ChildProcess> start_client(std::size_t slot, int id, int seconds_left) {
    while (proxies_.size() <= slot) proxies_.push_back(std::make_unique<ProxySet>(etcd_.endpoints()));
    const std::string endpoints = proxies_[slot]->endpoints_csv();
    return std::make_unique<ChildProcess>(std::vector<std::string>{
        built_program("chaos_client"), endpoints, prefix_, "alpha,beta,gamma", kElection, kSharedLock, kSemaphore,
        joined(kMultiLockNames), std::to_string(kPermits), std::to_string(kTtlSeconds), std::to_string(seconds_left),
        std::to_string(kLostReplyPercent), output(id)});
  }

  // Per client slot, a proxy to each member.
  std::vector<std::unique_ptr<ProxySet>> proxies_;

  std::string output(int id) const { return (directory_ / ("client-" + std::to_string(id) + ".log")).string(); }

  std::filesystem::path directory_ = [] {
    std::string pattern = (std::filesystem::temp_directory_path() / "etcdlock-chaos-XXXXXX").string();
    return std::filesystem::path(mkdtemp(pattern.data()));
  }();

  ~Chaos() override { std::filesystem::remove_all(directory_); }
};

struct Commit {
  std::int64_t token;
  long value;
};

TEST_F(Chaos, NoLostUpdateNoStaleWriteNothingLeftBehind) {
  const int duration = seconds();
  const auto start = std::chrono::steady_clock::now();
  auto seconds_left = [&] {
    return std::max<int>(
        1, duration -
               static_cast<int>(
                   std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start).count()));
  };
  std::vector<std::unique_ptr<ChildProcess>> clients;
  for (int id = 0; id < kClients; ++id) clients.push_back(start_client(id, id, duration));

  std::mt19937 random(20261124);
  std::map<std::string, int> faults;
  std::map<std::string, int> faulted;  // per name, how often its holder was frozen, killed or force-unlocked
  int next_client_id = kClients;
  std::vector<std::unique_ptr<ChildProcess>> finished;
  for (int step = 0; std::chrono::steady_clock::now() - start < std::chrono::seconds(duration - 8); ++step) {
    std::this_thread::sleep_for(1500ms);
    switch (step % 7) {
      case 0: {  // the leader dies, and comes back
        const auto leader = etcd_.leader_index();
        etcd_.member(leader).kill();
        std::this_thread::sleep_for(1s);
        etcd_.member(leader).start();
        etcd_.wait_ready(leader);
        ++faults["leader killed and restarted"];
        break;
      }
      case 1: {  // a member stops answering for a while
        const auto victim = random() % 3;
        etcd_.member(victim).freeze();
        std::this_thread::sleep_for(1500ms);
        etcd_.member(victim).thaw();
        ++faults["member frozen"];
        break;
      }
      case 2: {  // a client holding a lock pauses for longer than its TTL
        std::string name;
        if (ChildProcess* victim = freeze_a_holder(clients, name)) {
          std::this_thread::sleep_for(std::chrono::seconds(kTtlSeconds + 1));
          victim->signal(SIGCONT);
          ++faults["holder frozen past its TTL"];
          ++faulted[name];
        }
        break;
      }
      case 3: {  // a client dies holding a lock; another takes its place
        std::string name;
        if (ChildProcess* victim = freeze_a_holder(clients, name)) {
          ++faulted[name];
          victim->signal(SIGKILL);
          victim->wait();
          for (std::size_t slot = 0; slot < clients.size(); ++slot) {
            if (clients[slot].get() != victim) continue;
            finished.push_back(std::move(clients[slot]));
            clients[slot] = start_client(slot, next_client_id++, seconds_left());
          }
          ++faults["holder killed"];
        }
        break;
      }
      case 4: {  // history compacted, then a member restarts: watches resume past the compaction
        try {
          raw_.compact(put(raw_, prefix_ + "-compaction", std::to_string(step)), in(5s));
        } catch (const Error&) {
          break;  // etcd is busy failing over: no fault this time
        }
        const auto victim = random() % 3;
        etcd_.member(victim).restart();
        etcd_.wait_ready(victim);
        ++faults["compaction, then a member restarted"];
        break;
      }
      case 5: {  // an admin removes a holder
        try {
          const std::string& name = kNames[random() % kNames.size()];
          if (admin_->force_unlock(name)) {
            ++faults["holder force-unlocked"];
            ++faulted[name];
          }
        } catch (const Error&) {
        }
        break;
      }
      case 6: {  // a client's replies are held past its command timeout, then released
        auto& links = *proxies_[random() % clients.size()];
        links.hold_replies();
        std::this_thread::sleep_for(1500ms);
        links.resume_replies();
        ++faults["replies held for 1.5 s, then released"];
        break;
      }
    }
  }
  for (auto& client : clients) EXPECT_EQ(client->wait(), 0);

  // Read what every client logged.
  std::map<std::string, std::vector<Commit>> commits;
  std::map<std::string, int> unknown;
  std::map<std::string, long> dropped_at;  // per write site
  std::map<std::string, int> acquired;     // per name; a multi-lock's acquisition counts for each of its names
  long acquisitions = 0, losses = 0, violations = 0, reads = 0, permits = 0, dropped = 0;
  int most_permits = 0;
  for (int id = 0; id < next_client_id; ++id) {
    std::ifstream log(output(id));
    for (std::string line; std::getline(log, line);) {
      std::istringstream fields(line);
      std::string kind, name;
      fields >> kind;
      if (kind == "try" || kind == "inc" || kind == "rej") {
        Commit commit{};
        fields >> name >> commit.token >> commit.value;
        // Every try ends in inc or rej unless its outcome is unknown.
        unknown[name] += kind == "try" ? 1 : -1;
        if (kind == "inc") commits[name].push_back(commit);
      } else if (kind == "lost") {
        ++losses;
      } else if (kind == "read") {
        ++reads;
      } else if (kind == "permit") {
        fields >> name;
        int token = 0, standing = 0;
        fields >> token >> standing;
        ++permits;
        most_permits = std::max(most_permits, standing);
      } else if (kind == "dropped_at") {
        std::string site;
        long count = 0;
        fields >> site >> count;
        dropped_at[site] += count;
      } else if (kind == "dropped") {
        long count = 0;
        fields >> count;
        dropped += count;
      } else if (kind == "violation") {
        ++violations;
        ADD_FAILURE() << "client " << id << ": " << line;
      } else if (kind == "threads") {
        int before = 0, after = 0;
        fields >> before >> after;
        EXPECT_LE(after, before) << "client " << id << " leaked threads";
      } else if (kind == "acq") {
        fields >> name;
        ++acquired[name];
        ++acquisitions;
      }
    }
  }

  long increments = 0;
  for (const auto& name : kNames) {
    auto& list = commits[name];
    increments += static_cast<long>(list.size());
    const auto stored = get(raw_, prefix_ + "-data/" + name);
    const long counter = stored.kvs_size() ? std::stol(stored.kvs(0).value()) : 0;
    // Every committed increment counted once; those of unknown outcome may or may not have.
    EXPECT_GE(counter, static_cast<long>(list.size())) << name;
    EXPECT_LE(counter, static_cast<long>(list.size()) + unknown[name]) << name << ": lost updates";
    std::sort(list.begin(), list.end(), [](const Commit& a, const Commit& b) { return a.value < b.value; });
    for (std::size_t i = 1; i < list.size(); ++i) {
      EXPECT_LT(list[i - 1].value, list[i].value) << name << ": two commits wrote " << list[i].value;
      EXPECT_LT(list[i - 1].token, list[i].token)
          << name << ": fencing tokens out of commit order at value " << list[i].value;
    }
  }
  // Killed clients' leases expire within their TTL.
  EXPECT_TRUE(eventually([&] { return all_keys() == 0; }, std::chrono::seconds(kTtlSeconds + 5)))
      << all_keys() << " keys left under the prefix";

  int fault_count = 0;
  for (const auto& [kind, count] : faults) fault_count += count;
  // A multi-lock's acquisition counts once per name.
  std::cout << "chaos: " << duration << " s, acquisitions=" << acquisitions << ", increments=" << increments
            << ", faults=" << fault_count << ", losses=" << losses << ", violations=" << violations
            << ", reader checks=" << reads << ", permit checks=" << permits << " (at most " << most_permits << " of "
            << kPermits << " seen at once), replies dropped after commit=" << dropped << "\n";
  for (const auto& [kind, count] : faults) std::cout << "  " << count << " x " << kind << "\n";
  for (const auto& [site, count] : dropped_at) std::cout << "  " << count << " replies dropped at " << site << "\n";
  for (const auto& name : kNames) {
    const bool multi = std::ranges::find(kMultiLockNames, name) != kMultiLockNames.end();
    const std::string kind = name == kElection ? " (election)" : multi ? " (multi-lock)" : "";
    std::cout << "  " << commits[name].size() << " increments of " << name << kind << " in " << acquired[name]
              << " acquisitions; its holder frozen, killed or force-unlocked " << faulted[name] << " times\n";
    EXPECT_GT(commits[name].size(), 0u) << name;
  }
  EXPECT_GT(fault_count, 0);
  EXPECT_GT(increments, 0);
  EXPECT_GT(reads, 0) << "no reader of the shared lock checked anything";
  EXPECT_GT(permits, 0) << "no permit holder checked anything";
  EXPECT_GT(dropped, 0) << "no reply was lost after its write committed";
}

}  // namespace
}  // namespace etcdlock::testing
