// `etcdlock run` and `elect` never let a command run beside the next holder's
// (issue 26). Each command appends marks with the time in nanoseconds to a
// shared file every 20 ms while it runs, so that whether two ran at once is
// measured from the marks, not guessed: a command's span is its first to its
// last mark, and two spans must not overlap.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "child_process.h"
#include "lock_fixture.h"
#include "marked_commands.h"
#include "tcp_proxy.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;

class CliSafety : public LockTest, protected MarkedCommands {
 protected:
  ChildProcess etcdlock(const std::string& endpoints, std::vector<std::string> args) {
    return ChildProcess(etcdlock_argv(endpoints, prefix_, args));
  }
  ChildProcess etcdlock(std::vector<std::string> args) { return etcdlock(etcd_.endpoints_csv(), std::move(args)); }

  // `etcdlock run job` of a command that marks "A" every 20 ms until the file
  // `go` exists.
  ChildProcess run_marking_until(const std::string& go) {
    return etcdlock({"run", "job", "--ttl", "10s", "--", "sh", "-c",
                     record_group() + "; while [ ! -e '" + go + "' ]; do " + mark("A") + "; sleep 0.02; done"});
  }

  int port() const {
    const auto endpoint = etcd_.endpoints()[0];
    return std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  }

  // The first holder's etcdlock runs through `link`; the next one, already
  // waiting, does not. The link is cut until the first command marks "T"
  // (SIGTERM, on the loss), then heals at once: etcd is reachable again.
  void lose_through_a_partition(TcpProxy& link, ChildProcess& first) {
    link.pause();
    const bool stopped = marked("T", 20s);
    link.resume();
    ASSERT_TRUE(stopped) << "the first command was never told of the loss";
    EXPECT_EQ(first.wait(), 76);
  }
};

// Finding 1: the lost lease is not revoked at the loss; a command that takes
// 300 ms to stop after SIGTERM stops before the next holder's starts.
TEST_F(CliSafety, AfterALossTheNextHolderWaitsForTheCommandToStop) {
  TcpProxy link(port());
  const std::string slow_stop =
      "trap '" + mark("T") + "; " + marking("A", 15) + "; exit 0' TERM; " + record_group() + "; " + marking("A");
  auto first =
      etcdlock(link.endpoint(), {"run", "job", "--ttl", "3s", "--kill-after", "400ms", "--", "sh", "-c", slow_stop});
  ASSERT_TRUE(marked("A"));
  auto next = etcdlock({"run", "job", "--", "sh", "-c", marking("B", 10)});
  ASSERT_TRUE(eventually([&] { return entries("job") == 2; }));
  lose_through_a_partition(link, first);
  EXPECT_EQ(next.wait(), 0);
  expect_before("A", "B");
}

// Finding 2: the same with a semaphore of two permits: never three commands.
TEST_F(CliSafety, AfterALossOfAPermitNoThirdCommandRuns) {
  TcpProxy link(port());
  const std::string slow_stop =
      "trap '" + mark("T") + "; " + marking("A", 15) + "; exit 0' TERM; " + record_group() + "; " + marking("A");
  auto first = etcdlock(
      link.endpoint(), {"run", "-n", "2", "jobs", "--ttl", "3s", "--kill-after", "400ms", "--", "sh", "-c", slow_stop});
  ASSERT_TRUE(marked("A"));
  const auto go = (directory_ / "go").string();
  auto second = etcdlock({"run", "-n", "2", "jobs", "--", "sh", "-c",
                          record_group() + "; while [ ! -e '" + go + "' ]; do " + mark("S") + "; sleep 0.02; done"});
  ASSERT_TRUE(marked("S"));
  auto next = etcdlock({"run", "-n", "2", "jobs", "--", "sh", "-c", marking("B", 10)});
  ASSERT_TRUE(eventually([&] { return entries("jobs") == 3; }));
  lose_through_a_partition(link, first);
  EXPECT_EQ(next.wait(), 0);
  std::ofstream{go};
  EXPECT_EQ(second.wait(), 0);
  expect_before("A", "B");  // S ran throughout: B beside A would make three
}

// Finding 3: after a loss, a worker of the command's group that ignores
// SIGTERM is killed, and the next holder starts only after it is gone.
TEST_F(CliSafety, AfterALossTheWholeGroupIsKilledBeforeTheNextHolder) {
  TcpProxy link(port());
  const auto worker = script("worker.sh", "trap '' TERM; " + marking("W"));
  const std::string command =
      "trap '" + mark("T") + "; exit 143' TERM; " + record_group() + "; sh '" + worker + "' & wait";
  auto first =
      etcdlock(link.endpoint(), {"run", "job", "--ttl", "3s", "--kill-after", "300ms", "--", "sh", "-c", command});
  ASSERT_TRUE(marked("W"));
  auto next = etcdlock({"run", "job", "--", "sh", "-c", marking("B", 10)});
  ASSERT_TRUE(eventually([&] { return entries("job") == 2; }));
  lose_through_a_partition(link, first);
  const auto worker_after_exit = spans().at("W").last;
  EXPECT_EQ(next.wait(), 0);
  expect_before("W", "B");
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(spans().at("W").last, worker_after_exit) << "the worker outlived etcdlock run";
}

// Finding 4: the same for `elect`, which shares the supervision.
TEST_F(CliSafety, ElectKillsTheWholeGroupAfterALossBeforeTheNextLeader) {
  TcpProxy link(port());
  const auto worker = script("worker.sh", "trap '' TERM; " + marking("W"));
  const std::string command =
      "trap '" + mark("T") + "; exit 143' TERM; " + record_group() + "; sh '" + worker + "' & wait";
  auto first = etcdlock(link.endpoint(),
                        {"elect", "e", "first", "--ttl", "3s", "--kill-after", "300ms", "--", "sh", "-c", command});
  ASSERT_TRUE(marked("W"));
  auto next = etcdlock({"elect", "e", "next", "--", "sh", "-c", marking("B", 10)});
  ASSERT_TRUE(eventually([&] { return entries("e") == 2; }));
  lose_through_a_partition(link, first);
  EXPECT_EQ(next.wait(), 0);
  expect_before("W", "B");
}

// Finding 5: Ctrl-Z stops the command with etcdlock; continued after its
// lease ran out, etcdlock kills the command instead of continuing it.
TEST_F(CliSafety, CtrlZStopsTheCommandAndALeaseThatRanOutKillsIt) {
  auto first = etcdlock({"run", "job", "--ttl", "2s", "--", "sh", "-c", record_group() + "; " + marking("A")});
  ASSERT_TRUE(marked("A"));
  auto next = etcdlock({"run", "job", "--", "sh", "-c", marking("B", 10)});
  ASSERT_TRUE(eventually([&] { return entries("job") == 2; }));
  first.signal(SIGTSTP);
  ASSERT_TRUE(marked("B", 20s)) << "the next holder never ran";
  EXPECT_EQ(next.wait(), 0);
  first.signal(SIGCONT);
  EXPECT_EQ(first.wait(), 76);
  expect_before("A", "B");
}

// Finding 5, the other way: continued while the lease lives, the command
// runs on and the lock is released normally.
TEST_F(CliSafety, CtrlZThenFgWithinTheLeaseContinuesTheCommand) {
  const auto go = (directory_ / "go").string();
  auto run = run_marking_until(go);
  ASSERT_TRUE(marked("A"));
  run.signal(SIGTSTP);
  std::this_thread::sleep_for(300ms);
  const auto stopped_at = spans().at("A").last;
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(spans().at("A").last, stopped_at) << "the command ran while etcdlock was stopped";
  run.signal(SIGCONT);
  // Not continued, the command would never see `go`: no wait for it then.
  ASSERT_TRUE(eventually([&] { return spans().at("A").last > stopped_at; }, 5s)) << "not continued";
  std::ofstream{go};
  EXPECT_EQ(run.wait(), 0);
  EXPECT_EQ(entries("job"), 0);
}

// A `fg` that comes while etcdlock is still stopping its command (its grace
// for the command to act on SIGTSTP is 50 ms): until 2026-12-03 etcdlock then
// stopped itself, which discarded that SIGCONT, and both stayed stopped (CI
// found it: the SIGCONT of the test above came during a slow stop).
TEST_F(CliSafety, FgWhileTheCommandIsBeingStoppedContinuesIt) {
  const auto go = (directory_ / "go").string();
  auto run = run_marking_until(go);
  ASSERT_TRUE(marked("A"));
  run.signal(SIGTSTP);
  std::this_thread::sleep_for(20ms);
  run.signal(SIGCONT);
  std::this_thread::sleep_for(300ms);
  const auto after_fg = spans().at("A").last;
  ASSERT_TRUE(eventually([&] { return spans().at("A").last > after_fg; }, 5s))
      << "etcdlock and its command stay stopped";
  std::ofstream{go};
  EXPECT_EQ(run.wait(), 0);
  EXPECT_EQ(entries("job"), 0);
}

// Finding 6: etcdlock killed with SIGKILL takes its command along, and what
// the command started in the background, before the lease can expire.
TEST_F(CliSafety, KilledEtcdlockTakesItsCommandAlong) {
  const auto worker = script("worker.sh", marking("W"));
  auto first = etcdlock(
      {"run", "job", "--ttl", "2s", "--", "sh", "-c", record_group() + "; sh '" + worker + "' & " + marking("A")});
  ASSERT_TRUE(marked("A") && marked("W"));
  auto next = etcdlock({"run", "job", "--", "sh", "-c", marking("B", 10)});
  ASSERT_TRUE(eventually([&] { return entries("job") == 2; }));
  first.signal(SIGKILL);
  EXPECT_EQ(first.wait(), 128 + SIGKILL);
  ASSERT_TRUE(marked("B", 20s)) << "the next holder never ran";
  EXPECT_EQ(next.wait(), 0);
  expect_before("A", "B");
  expect_before("W", "B");
}

// A command that exits normally and leaves a process in the background: the
// lock is released only once that process is gone too.
TEST_F(CliSafety, ReleaseWaitsForWhatTheCommandLeftRunning) {
  const auto worker = script("worker.sh", marking("W", 25));
  auto first = etcdlock({"run", "job", "--", "sh", "-c", record_group() + "; sh '" + worker + "' & exit 5"});
  ASSERT_TRUE(marked("W"));
  auto next = etcdlock({"run", "job", "--", "sh", "-c", marking("B", 10)});
  EXPECT_EQ(first.wait(), 5) << "the command's own status";
  EXPECT_EQ(next.wait(), 0);
  expect_before("W", "B");
}

// A release that etcd does not answer keeps the command's own status, for a
// lock, a permit and a leadership.
TEST_F(CliSafety, UnansweredReleaseKeepsTheCommandsStatus) {
  const std::vector<std::vector<std::string>> holds = {{"run", "job"}, {"run", "-n", "2", "jobs"}, {"elect", "e", "p"}};
  for (const auto& hold : holds) {
    const auto go = (directory_ / "go").string();
    std::filesystem::remove(go);
    std::vector<std::string> args = {"--command-timeout", "500ms"};
    args.insert(args.end(), hold.begin(), hold.end());
    for (const std::string arg : {"--", "sh", "-c"}) args.push_back(arg);
    args.push_back("echo started; while [ ! -e '" + go + "' ]; do sleep 0.02; done; exit 3");
    auto run = etcdlock(args);
    ASSERT_EQ(run.read_line(), "started") << hold[0];
    etcd_.member(0).kill();
    std::ofstream{go};
    const int status = run.wait();
    etcd_.member(0).start();
    etcd_.wait_ready(0);
    EXPECT_EQ(status, 3) << ::testing::PrintToString(hold);
  }
}

// What the shim cannot start maps to the statuses a shell uses.
TEST_F(CliSafety, ACommandThatCannotBeRunExits126AndAMissingOne127) {
  const auto not_executable = script("plain.txt", "true");
  chmod(not_executable.c_str(), 0644);
  EXPECT_EQ(etcdlock({"run", "job", "--", not_executable}).wait(), 126);
  EXPECT_EQ(etcdlock({"run", "job", "--", "/no/such/command"}).wait(), 127);
  EXPECT_EQ(etcdlock({"elect", "e", "p", "--", "/no/such/command"}).wait(), 127);
  EXPECT_EQ(entries("job"), 0);
  EXPECT_EQ(entries("e"), 0);
}

// Issue 25: `etcdlock run A B` holds both names as one. Runs on {A, B} in
// both orders, beside runs on A alone and B alone, all started at once: on
// each name no two commands ever run at once, each name's commands run in the
// order of their fencing tokens, every run ends (no deadlock, whatever the
// order of the names), and nothing is left in etcd. Each command also says
// what its environment names: a multi-name run's names come sorted, with one
// key each under its name's directory.
TEST_F(CliSafety, MultiNameRunsInBothOrdersNeverOverlapOnAName) {
  struct Run {
    std::vector<std::string> names;  // as given on the command line
    std::unique_ptr<ChildProcess> process;
    std::string environment;  // the command's first line
  };
  const std::vector<std::vector<std::string>> shapes = {{"A", "B"}, {"B", "A"}, {"A"}, {"B"}};
  std::vector<Run> runs;
  for (int round = 0; round < 3; ++round) {
    for (const auto& shape : shapes) {
      const std::string id = std::to_string(runs.size());
      // Marks "<name><id>" for each name held, interleaved, for about 100 ms.
      std::string marks;
      for (const auto& name : shape) marks += mark(name + id) + "; ";
      std::vector<std::string> args = {"run"};
      args.insert(args.end(), shape.begin(), shape.end());
      args.insert(args.end(),
                  {"--", "sh", "-c",
                   record_group() +
                       "; echo \"$ETCDLOCK_NAMES|$ETCDLOCK_NAME_1|$ETCDLOCK_NAME_2|$ETCDLOCK_KEY_1|$ETCDLOCK_KEY_2|"
                       "$ETCDLOCK_NAME|$ETCDLOCK_FENCING_TOKEN\"; i=0; while [ $i -lt 5 ]; do " +
                       marks + "sleep 0.02; i=$((i+1)); done; echo done"});
      runs.push_back({shape, std::make_unique<ChildProcess>(etcdlock_argv(etcd_.endpoints_csv(), prefix_, args)), ""});
    }
  }
  // Every run ends: with 12 runs of about 100 ms each, a minute means a deadlock.
  std::map<std::string, std::int64_t> token_of;  // by id
  for (std::size_t id = 0; id < runs.size(); ++id) {
    auto& run = runs[id];
    const auto environment = run.process->read_line(60s);
    ASSERT_TRUE(environment.has_value()) << "run " << id << " never started: a deadlock?";
    EXPECT_EQ(run.process->read_line(60s), "done") << "run " << id;
    EXPECT_EQ(run.process->wait(), 0) << "run " << id;
    std::vector<std::string> fields;
    std::stringstream stream(*environment);
    for (std::string field; std::getline(stream, field, '|');) fields.push_back(field);
    fields.resize(7);
    if (run.names.size() == 2) {
      EXPECT_EQ(fields[0], "2") << *environment;
      EXPECT_EQ(fields[1], "A") << *environment;
      EXPECT_EQ(fields[2], "B") << *environment;
      EXPECT_TRUE(fields[3].starts_with(prefix_ + "/A/")) << *environment;
      EXPECT_TRUE(fields[4].starts_with(prefix_ + "/B/")) << *environment;
      EXPECT_EQ(fields[5], "A") << "the first of the sorted names: " << *environment;
    } else {
      EXPECT_EQ(fields[0], "") << "ETCDLOCK_NAMES is for several names: " << *environment;
      EXPECT_EQ(fields[5], run.names[0]) << *environment;
    }
    token_of[std::to_string(id)] = std::stoll(fields[6].empty() ? "0" : fields[6]);
  }
  const auto all = spans();
  for (const std::string name : {"A", "B"}) {
    // This name's spans, by their first mark.
    std::vector<std::pair<std::string, MarkedCommands::Span>> ordered;
    for (const auto& [label, span] : all) {
      if (label.starts_with(name)) ordered.emplace_back(label, span);
    }
    std::ranges::sort(ordered, [](const auto& a, const auto& b) { return a.second.first < b.second.first; });
    EXPECT_EQ(ordered.size(), 9u) << name << ": each of the 9 runs that hold it marks it";
    double closest_ms = 1e9;
    for (std::size_t i = 0; i < ordered.size(); ++i) {
      EXPECT_EQ(ordered[i].second.marks, 5) << ordered[i].first;
      for (std::size_t j = i + 1; j < ordered.size(); ++j) {
        const double overlap = overlap_ms(ordered[i].first, ordered[j].first);
        EXPECT_LT(overlap, 0) << ordered[i].first << " ran beside " << ordered[j].first << " for " << overlap << " ms";
        closest_ms = std::min(closest_ms, -overlap);
      }
      if (i > 0) {
        // FIFO per name: the holders of a name follow one another in the order of their tokens.
        EXPECT_LT(token_of[ordered[i - 1].first.substr(1)], token_of[ordered[i].first.substr(1)])
            << name << ": " << ordered[i - 1].first << " ran before " << ordered[i].first;
      }
    }
    std::cout << name << ": " << ordered.size() << " commands, the closest two " << closest_ms << " ms apart\n";
  }
  EXPECT_TRUE(eventually([&] { return all_keys() == 0; })) << all_keys() << " keys left under the prefix";
}

}  // namespace
}  // namespace etcdlock::testing
