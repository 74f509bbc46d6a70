// A tiny run of every benchmark mode against a real etcd: each runs, prints
// one JSON line, and contended mode sees no overlap. Not timed.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "child_process.h"
#include "etcd_cluster.h"

namespace etcdlock::testing {
namespace {

class BenchSmoke : public ::testing::TestWithParam<std::vector<std::string>> {
 protected:
  EtcdCluster etcd_{1};
};

TEST_P(BenchSmoke, RunsAndReportsOneJsonLine) {
  std::vector<std::string> argv = {
      built_program("../bench/lockbench"), "--endpoints=" + etcd_.endpoints_csv(), "--ops", "5", "--warmup", "1"};
  for (const auto& arg : GetParam()) argv.push_back(arg);
  ChildProcess bench(argv);
  const auto line = bench.read_line(std::chrono::seconds(60));
  ASSERT_TRUE(line) << "no output";
  EXPECT_EQ(bench.wait(), 0);
  const auto result = nlohmann::json::parse(*line);
  EXPECT_EQ(result["implementation"], "etcdlock");
  EXPECT_GT(result["ops"].get<long>(), 0);
  EXPECT_EQ(result["errors"].get<long>(), 0);
  EXPECT_GT(result["ops_per_s"].get<double>(), 0);
  if (result.contains("correct")) {
    EXPECT_TRUE(result["correct"].get<bool>());
  }
  if (result.contains("overlaps")) {
    EXPECT_EQ(result["overlaps"].get<long>(), 0);
    EXPECT_EQ(result["lost_updates"].get<long>(), 0);
  }
  if (result["mode"] == "scale") {
    EXPECT_EQ(result["distinct_leases_of_held_locks"].get<int>(), 1);
    // One renewal's stream at most: each renewal opens one and closes it.
    EXPECT_LE(result["server_open_keepalive_streams"].get<double>(), 1);
    EXPECT_EQ(result["server_open_watch_streams"].get<double>(), 1);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Modes, BenchSmoke,
    ::testing::Values(std::vector<std::string>{"--mode", "uncontended"}, std::vector<std::string>{"--mode", "raw"},
                      std::vector<std::string>{"--mode", "contended", "--clients", "4"},
                      std::vector<std::string>{"--mode", "handoff"},
                      std::vector<std::string>{"--mode", "manykeys", "--clients", "4"},
                      std::vector<std::string>{"--mode", "reentrant"},
                      std::vector<std::string>{"--mode", "semaphore", "--clients", "4", "--limit", "2"},
                      std::vector<std::string>{"--mode", "rwlock", "--clients", "4"},
                      std::vector<std::string>{"--mode", "scale", "--keys", "50"},
                      std::vector<std::string>{"--mode", "asynccontended", "--clients", "4"},
                      std::vector<std::string>{"--mode", "asyncwait", "--keys", "50"}));

}  // namespace
}  // namespace etcdlock::testing
