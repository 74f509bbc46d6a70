// Leader election against real etcd: one leader at a time, failover when the
// leader dies or resigns, observers that see every change and "no leader",
// and interoperation with etcdctl elect.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "child_process.h"
#include "expect_error.h"
#include "lock_fixture.h"
#include "tcp_proxy.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

class ElectionTest : public LockTest {
 protected:
  // Records what an observer was told, in order.
  struct Observed {
    std::mutex mu;
    std::vector<std::optional<std::string>> values;  // the leader's value, or nullopt for none

    std::function<void(const std::optional<LeaderInfo>&)> recorder() {
      return [this](const std::optional<LeaderInfo>& leader) {
        std::lock_guard lock(mu);
        values.push_back(leader ? std::optional(leader->value) : std::nullopt);
      };
    }
    std::vector<std::optional<std::string>> seen() {
      std::lock_guard lock(mu);
      return values;
    }
  };

  std::unique_ptr<ChildProcess> candidate(const std::string& value, int ttl_seconds = 2) {
    return std::make_unique<ChildProcess>(std::vector<std::string>{
        built_program("election_candidate"), etcd_.endpoints_csv(), prefix_, "e", std::to_string(ttl_seconds), value});
  }
};

TEST_F(ElectionTest, OneLeaderAmongEightCandidatesInFourManagers) {
  constexpr int kManagers = 4;
  constexpr int kRounds = 3;
  std::vector<std::unique_ptr<LockManager>> managers;
  for (int i = 0; i < kManagers; ++i) managers.push_back(manager());
  std::atomic<int> leading{0};
  std::atomic<int> overlaps{0};
  std::atomic<int> terms{0};
  std::vector<std::jthread> candidates;
  for (int i = 0; i < 2 * kManagers; ++i) {
    candidates.emplace_back([&, i] {
      auto election = managers[i % kManagers]->get_election("e");
      for (int round = 0; round < kRounds; ++round) {
        election->campaign("candidate-" + std::to_string(i));
        if (leading.fetch_add(1) != 0) ++overlaps;
        // A leader's write, guarded by its leadership: committed only while it leads.
        EXPECT_TRUE(election->guarded_put(prefix_ + "-leader", std::to_string(i)));
        EXPECT_EQ(election->leader()->value, "candidate-" + std::to_string(i));
        std::this_thread::sleep_for(10ms);
        leading.fetch_sub(1);
        ++terms;
        election->resign();
      }
    });
  }
  candidates.clear();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(terms.load(), 2 * kManagers * kRounds);
  EXPECT_EQ(entries("e"), 0);
}

TEST_F(ElectionTest, LeaderKilledIsReplacedWithinOneTtl) {
  auto leader = candidate("first", 2);
  ASSERT_TRUE(leader->read_line()->starts_with("leader "));
  auto manager = this->manager();
  auto election = manager->get_election("e");
  std::atomic<bool> elected{false};
  std::jthread campaign([&] {
    election->campaign("second");
    elected = true;
  });
  ASSERT_TRUE(eventually([&] { return entries("e") == 2; }));
  const auto killed_at = Steady::now();
  leader->signal(SIGKILL);
  leader->wait();
  ASSERT_TRUE(eventually([&] { return elected.load(); }, 5s));
  EXPECT_LT(Steady::now() - killed_at, 3s) << "not within one TTL of the crash";
  EXPECT_EQ(election->leader()->value, "second");
  campaign.join();
  election->resign();
}

TEST_F(ElectionTest, ResignHandsOverInMilliseconds) {
  auto first_manager = manager();
  auto second_manager = manager();
  auto first = first_manager->get_election("e");
  auto second = second_manager->get_election("e");
  first->campaign("a");
  Steady::time_point elected_at;
  std::jthread campaign([&] {
    second->campaign("b");
    elected_at = Steady::now();
  });
  ASSERT_TRUE(eventually([&] { return entries("e") == 2; }));
  std::this_thread::sleep_for(300ms);
  const auto resigned_at = Steady::now();
  first->resign();
  campaign.join();
  const auto took = std::chrono::duration_cast<std::chrono::microseconds>(elected_at - resigned_at);
  std::cout << "resign to new leader: " << took.count() << " us\n";
  EXPECT_LT(took, 1s);
  EXPECT_FALSE(first->is_leader());
  EXPECT_TRUE(second->is_leader());
  first->resign();  // idempotent
  second->resign();
}

TEST_F(ElectionTest, ObserveSeesEveryChangeInOrderAndNoLeader) {
  auto watcher = manager();
  Observed observed;
  auto observation = watcher->get_election("e")->observe(observed.recorder());
  auto a_manager = manager();
  auto b_manager = manager();
  auto a = a_manager->get_election("e");
  auto b = b_manager->get_election("e");
  a->campaign("a1");
  ASSERT_TRUE(a->proclaim("a2"));
  std::jthread waiting([&] { b->campaign("b1"); });
  ASSERT_TRUE(eventually([&] { return entries("e") == 2; }));
  a->resign();
  waiting.join();
  b->resign();
  using Values = std::vector<std::optional<std::string>>;
  const Values expected{std::nullopt, "a1", "a2", "b1", std::nullopt};
  EXPECT_TRUE(eventually([&] { return observed.seen() == expected; }, 5s));
  EXPECT_EQ(observed.seen(), expected);
  observation.stop();
  a->campaign("after");
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(observed.seen(), expected) << "a call after stop()";
  a->resign();
}

// Several changes in one revision (a Txn, a range delete): each counts.
TEST_F(ElectionTest, ObserverAppliesEveryChangeOfOneRevision) {
  auto manager = this->manager();
  const auto dir = prefix_ + "/e/";
  put(raw_, dir + "1a", "first");
  put(raw_, dir + "2b", "second");
  Observed observed;
  auto observation = manager->get_election("e")->observe(observed.recorder());
  ASSERT_TRUE(eventually([&] { return !observed.seen().empty(); }));
  etcdserverpb::DeleteRangeRequest both;
  both.set_key(dir);
  both.set_range_end(detail::prefix_range_end(dir));
  ASSERT_EQ(raw_.delete_range(both, in(5s)).deleted(), 2);
  using Values = std::vector<std::optional<std::string>>;
  EXPECT_TRUE(eventually([&] { return observed.seen() == Values{"first", std::nullopt}; }));
  EXPECT_EQ(observed.seen(), (Values{"first", std::nullopt}));
}

TEST_F(ElectionTest, ProclaimByANonLeaderIsRefused) {
  auto leader_manager = manager();
  auto other_manager = manager();
  auto leader = leader_manager->get_election("e");
  auto other = other_manager->get_election("e");
  EXPECT_FALSE(other->proclaim("nobody leads"));
  leader->campaign("a");
  EXPECT_FALSE(other->proclaim("usurper"));
  EXPECT_EQ(leader->leader()->value, "a");
  EXPECT_FALSE(other->guarded_put(prefix_ + "-x", "usurper"));
  EXPECT_EQ(other->fencing_token(), 0);
  leader->resign();
  EXPECT_FALSE(leader->proclaim("after resigning"));
}

TEST_F(ElectionTest, CancelAndTimeoutLeaveNoKey) {
  auto leader_manager = manager();
  auto leader = leader_manager->get_election("e");
  leader->campaign("a");
  auto other_manager = manager();
  auto other = other_manager->get_election("e");
  EXPECT_FALSE(other->campaign_for("b", 300ms));
  EXPECT_EQ(entries("e"), 1);
  std::stop_source cancel;
  std::jthread campaign(
      [&] { expect_error(errc::cancelled, "cancelled", [&] { other->campaign("b", cancel.get_token()); }); });
  ASSERT_TRUE(eventually([&] { return entries("e") == 2; }));
  cancel.request_stop();
  campaign.join();
  EXPECT_EQ(entries("e"), 1);
  leader->resign();
  EXPECT_EQ(entries("e"), 0);
}

TEST_F(ElectionTest, ACandidateWhoseLeaseIsLostCampaignsAgainOnTheNewOne) {
  auto leader_manager = manager();
  auto leader = leader_manager->get_election("e");
  leader->campaign("a");
  auto candidate_manager = manager();
  auto candidate = candidate_manager->get_election("e");
  std::atomic<bool> elected{false};
  std::jthread campaign([&] {
    candidate->campaign("b");
    elected = true;
  });
  ASSERT_TRUE(eventually([&] { return entries("e") == 2; }));
  const auto old_lease = candidate_manager->lease_id();
  ASSERT_TRUE(leader_manager->revoke_lease(old_lease));
  ASSERT_TRUE(eventually([&] { return candidate_manager->lease_id() != old_lease && entries("e") == 2; }));
  EXPECT_FALSE(elected);
  leader->resign();
  campaign.join();
  EXPECT_TRUE(candidate->is_leader());
  EXPECT_EQ(candidate->leader()->lease_id, candidate_manager->lease_id());
  candidate->resign();
}

// A leader cut off from etcd knows it before another candidate can lead.
TEST_F(ElectionTest, LeaderCutOffLearnsOfItBeforeAnotherCandidateWins) {
  const auto endpoint = etcd_.endpoints()[0];
  TcpProxy link(std::stoi(endpoint.substr(endpoint.rfind(':') + 1)));
  auto through = options();
  through.endpoints = {link.endpoint()};
  through.ttl = 2s;
  LockManager leader_manager(through);
  auto leader = leader_manager.get_election("e");
  leader->campaign("a");
  // Set on a notifier thread: nothing orders that write before the reads below.
  std::atomic<Steady::time_point> lost_at{};
  std::stop_callback on_loss(leader->lost_token(), [&] { lost_at = Steady::now(); });
  auto other_manager = manager();
  auto other = other_manager->get_election("e");
  Steady::time_point elected_at;
  std::jthread campaign([&] {
    other->campaign("b");
    elected_at = Steady::now();
  });
  ASSERT_TRUE(eventually([&] { return entries("e") == 2; }));
  link.pause();
  campaign.join();
  ASSERT_NE(lost_at.load(), Steady::time_point());
  EXPECT_LT(lost_at.load(), elected_at) << "another candidate led before the old leader knew it had lost";
  EXPECT_FALSE(leader->is_leader());
  link.resume();
  other->resign();
}

TEST_F(ElectionTest, EtcdctlElectAndEtcdlockShareTheElection) {
  ChildProcess etcdctl({"etcdctl", "--endpoints=" + etcd_.endpoints_csv(), "elect", prefix_ + "/e", "from-etcdctl"});
  const auto key = etcdctl.read_line();
  ASSERT_TRUE(key && key->starts_with(prefix_ + "/e/"));
  EXPECT_EQ(etcdctl.read_line(), "from-etcdctl");

  auto manager = this->manager();
  auto election = manager->get_election("e");
  EXPECT_EQ(election->leader()->value, "from-etcdctl");
  Observed observed;
  auto observation = election->observe(observed.recorder());
  EXPECT_FALSE(election->campaign_for("from-etcdlock", 500ms)) << "etcdlock led beside etcdctl";
  std::atomic<bool> elected{false};
  std::jthread campaign([&] {
    election->campaign("from-etcdlock");
    elected = true;
  });
  ASSERT_TRUE(eventually([&] { return entries("e") == 2; }));
  etcdctl.signal(SIGINT);  // etcdctl resigns on SIGINT
  EXPECT_EQ(etcdctl.wait(), 0);
  campaign.join();
  ASSERT_TRUE(elected);

  ChildProcess listener({"etcdctl", "--endpoints=" + etcd_.endpoints_csv(), "elect", "-l", prefix_ + "/e"});
  EXPECT_EQ(listener.read_line(), election->leader()->key);
  EXPECT_EQ(listener.read_line(), "from-etcdlock");
  ASSERT_TRUE(election->proclaim("proclaimed"));
  EXPECT_EQ(listener.read_line(), election->leader()->key);
  EXPECT_EQ(listener.read_line(), "proclaimed");
  listener.signal(SIGINT);
  listener.wait();
  election->resign();
  using Values = std::vector<std::optional<std::string>>;
  EXPECT_TRUE(eventually([&] {
    return observed.seen() == Values{"from-etcdctl", "from-etcdlock", "proclaimed", std::nullopt};
  }));
}

TEST_F(ElectionTest, ANameIsALockOrAnElectionNotBoth) {
  auto manager = this->manager();
  auto lock = manager->get_lock("x");
  expect_error(errc::invalid_argument, "names a lock in this manager; it cannot also name an election",
               [&] { manager->get_election("x"); });
  auto election = manager->get_election("y");
  expect_error(errc::invalid_argument, "names an election in this manager; it cannot also name a lock",
               [&] { manager->get_lock("y"); });
  expect_error(errc::invalid_argument, "retry_interval of 0 ms for election",
               [&] { manager->get_election("z", ElectionOptions{.retry_interval = 0ms}); });
}

// The keys of longer names share the election's directory ("e/0" under
// "e"), and the oldest key leads, as Go's Election and `etcdctl elect` see it.
TEST_F(ElectionTest, AnOlderKeyOfALongerNameLeadsAsInGo) {
  auto holder = manager();
  auto longer = holder->get_lock("e/0");
  longer->lock();
  auto candidate = manager();
  auto election = candidate->get_election("e");
  std::atomic<bool> won{false};
  std::jthread campaign([&] {
    election->campaign("winner");
    won = true;
  });
  std::this_thread::sleep_for(500ms);
  EXPECT_FALSE(won) << "campaigned past an older key under the election's directory";
  const auto leader = manager()->get_election("e")->leader();
  ASSERT_TRUE(leader.has_value());
  EXPECT_EQ(leader->key, longer->key()) << "the oldest key under the directory leads";
  longer->unlock();
  campaign.join();
  ASSERT_TRUE(won);
  const auto now = manager()->get_election("e")->leader();
  ASSERT_TRUE(now.has_value());
  EXPECT_EQ(now->value, "winner");
  EXPECT_EQ(now->revision, election->fencing_token());
  election->resign();
  EXPECT_FALSE(manager()->get_election("e")->leader().has_value());
}

}  // namespace
}  // namespace etcdlock::testing
