// The deadlock view against a real etcd: two managers that take two locks one
// by one, in opposite orders, deadlock; LockManager::deadlocks(), the metrics
// and `etcdlock status` show it, and it clears once one of them gives up.
#include <gtest/gtest.h>

#include <latch>
#include <nlohmann/json.hpp>
#include <thread>

#include "child_process.h"
#include "lock_fixture.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;

class DeadlockView : public LockTest {
 protected:
  ChildProcess etcdlock(std::vector<std::string> args) {
    std::vector<std::string> argv = {built_program("../tools/cli/etcdlock"), "--endpoints=" + etcd_.endpoints_csv(),
                                     "--prefix=" + prefix_};
    argv.insert(argv.end(), args.begin(), args.end());
    return ChildProcess(argv);
  }
  // Every line of the command's output, and its exit status.
  std::pair<int, std::vector<std::string>> output(std::vector<std::string> args) {
    auto process = etcdlock(std::move(args));
    std::vector<std::string> lines;
    while (auto line = process.read_line(10s)) lines.push_back(*line);
    return {process.wait(), lines};
  }
  std::unique_ptr<LockManager> manager_of(const std::string& owner) {
    auto options = this->options();
    options.owner = owner;
    return std::make_unique<LockManager>(options);
  }
};

TEST_F(DeadlockView, TwoLocksTakenInOppositeOrdersShowAndThenClear) {
  auto alpha = manager_of("alpha");
  auto beta = manager_of("beta");
  std::latch both_hold(2);
  std::stop_source alpha_gives_up;
  bool alpha_got_y = true, beta_got_x = false;
  // Each thread takes its first lock, then waits for the other's.
  std::thread alpha_thread([&] {
    auto x = alpha->get_lock("jobs/x");
    std::lock_guard first(*x);
    both_hold.arrive_and_wait();
    auto y = alpha->get_lock("jobs/y");
    try {
      alpha_got_y = y->try_lock_for(30s, alpha_gives_up.get_token());
      if (alpha_got_y) y->unlock();
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), errc::cancelled);
      alpha_got_y = false;
    }
  });
  std::thread beta_thread([&] {
    auto y = beta->get_lock("jobs/y");
    std::lock_guard first(*y);
    both_hold.arrive_and_wait();
    auto x = beta->get_lock("jobs/x");
    beta_got_x = x->try_lock_for(30s);
    if (beta_got_x) x->unlock();
  });
  ASSERT_TRUE(eventually([&] { return entries("jobs/x") == 2 && entries("jobs/y") == 2; }));

  // info and list: each lock held by one, waited for by the other.
  const auto x_info = alpha->info("jobs/x");
  ASSERT_TRUE(x_info);
  EXPECT_EQ(x_info->owner, "alpha");
  ASSERT_EQ(x_info->queue.size(), 2u);
  EXPECT_EQ(x_info->queue[1].owner, "beta");
  EXPECT_FALSE(x_info->queue[1].holds);
  const auto rows = beta->list("jobs/");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].owner, "beta");
  EXPECT_EQ(rows[1].waiters, 1u);

  // The cycle, from the lower lease.
  const auto found = alpha->deadlocks();
  ASSERT_EQ(found.size(), 1u);
  const auto& members = found[0].members;
  ASSERT_EQ(members.size(), 2u);
  const bool alpha_first = alpha->lease_id() < beta->lease_id();
  const auto& a = members[alpha_first ? 0 : 1];
  const auto& b = members[alpha_first ? 1 : 0];
  EXPECT_EQ(a.lease_id, alpha->lease_id());
  EXPECT_EQ(a.owner, "alpha");
  EXPECT_EQ(a.holds, "jobs/x");
  EXPECT_TRUE(a.holding);
  EXPECT_EQ(a.waits_for, "jobs/y");
  EXPECT_EQ(b.lease_id, beta->lease_id());
  EXPECT_EQ(b.owner, "beta");
  EXPECT_EQ(b.holds, "jobs/y");
  EXPECT_EQ(b.waits_for, "jobs/x");
  EXPECT_EQ(alpha->deadlocks("jobs/x").size(), 0u) << "a cycle through a name outside the prefix is not seen";
  EXPECT_EQ(alpha->deadlocks("jobs/").size(), 1u);
  EXPECT_EQ(alpha->metrics().deadlock_cycles, 1);
  EXPECT_EQ(alpha->metrics().deadlocked_waits, 1);
  EXPECT_EQ(beta->metrics().deadlocked_waits, 0) << "beta has not looked";

  // etcdlock status: the rows, then one deadlock line naming both.
  const auto [status, lines] = output({"status"});
  EXPECT_EQ(status, 0);
  ASSERT_EQ(lines.size(), 6u) << ::testing::PrintToString(lines);
  const auto& line = lines[5];
  EXPECT_TRUE(line.starts_with("deadlock: ")) << line;
  EXPECT_NE(line.find("alpha (lease " + lease_hex(alpha->lease_id()) + ") holds jobs/x and waits for jobs/y"),
            std::string::npos)
      << line;
  EXPECT_NE(line.find("beta (lease " + lease_hex(beta->lease_id()) + ") holds jobs/y and waits for jobs/x"),
            std::string::npos)
      << line;
  const auto [json_status, json_lines] = output({"status", "--json"});
  EXPECT_EQ(json_status, 0);
  ASSERT_EQ(json_lines.size(), 1u);
  const auto json = nlohmann::json::parse(json_lines[0]);
  EXPECT_EQ(json["locks"].size(), 2u);
  ASSERT_EQ(json["deadlocks"].size(), 1u);
  const auto& cycle = json["deadlocks"][0]["members"];
  ASSERT_EQ(cycle.size(), 2u);
  const auto& json_alpha = cycle[alpha_first ? 0 : 1];
  EXPECT_EQ(json_alpha["owner"], "alpha");
  EXPECT_EQ(json_alpha["lease_id"], lease_hex(alpha->lease_id()));
  EXPECT_EQ(json_alpha["holds"], "jobs/x");
  EXPECT_EQ(json_alpha["holding"], true);
  EXPECT_EQ(json_alpha["waits_for"], "jobs/y");

  // alpha gives up its wait and releases x: beta goes through, and no cycle is left.
  alpha_gives_up.request_stop();
  alpha_thread.join();
  beta_thread.join();
  EXPECT_FALSE(alpha_got_y);
  EXPECT_TRUE(beta_got_x);
  EXPECT_EQ(alpha->deadlocks().size(), 0u);
  EXPECT_EQ(alpha->metrics().deadlock_cycles, 0);
  EXPECT_EQ(alpha->metrics().deadlocked_waits, 0);
  const auto [after_status, after] = output({"status", "--json"});
  EXPECT_EQ(after_status, 0);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(after[0])["deadlocks"], nlohmann::json::array());
}

// A holder and a waiter of one lock: no cycle, and status prints no deadlock line.
TEST_F(DeadlockView, AnOrdinaryQueueIsNoDeadlock) {
  auto alpha = manager_of("alpha");
  auto beta = manager_of("beta");
  auto held = alpha->get_lock("jobs/x");
  held->lock();
  std::thread waiter([&] {
    auto waiting = beta->get_lock("jobs/x");
    if (waiting->try_lock_for(30s)) waiting->unlock();
  });
  ASSERT_TRUE(eventually([&] { return entries("jobs/x") == 2; }));
  EXPECT_EQ(alpha->deadlocks().size(), 0u);
  const auto [status, lines] = output({"status"});
  EXPECT_EQ(status, 0);
  EXPECT_EQ(lines.size(), 3u) << ::testing::PrintToString(lines);
  const auto json = nlohmann::json::parse(output({"status", "--json"}).second.at(0));
  EXPECT_EQ(json["deadlocks"], nlohmann::json::array());
  held->unlock();
  waiter.join();
}

}  // namespace
}  // namespace etcdlock::testing
