// The etcdlock command against a real etcd: every subcommand and exit status,
// loss and signal handling, bad input, and interoperation with etcdctl lock.
#include <gtest/gtest.h>
#include <signal.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "child_process.h"
#include "lock_fixture.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;

class Cli : public LockTest {
 protected:
  // The etcdlock command with this test's endpoints and prefix.
  ChildProcess etcdlock(std::vector<std::string> args) {
    std::vector<std::string> argv = {built_program("../tools/cli/etcdlock"), "--endpoints=" + etcd_.endpoints_csv(),
                                     "--prefix=" + prefix_};
    argv.insert(argv.end(), args.begin(), args.end());
    return ChildProcess(argv);
  }
  // Runs it to the end; returns the exit status and its first line of output.
  std::pair<int, std::string> finish(std::vector<std::string> args) {
    auto process = etcdlock(std::move(args));
    const auto line = process.read_line(30s);
    return {process.wait(), line.value_or("")};
  }
};

TEST_F(Cli, RunGivesTheCommandTheLocksEnvironmentAndItsStatus) {
  const auto [status, line] =
      finish({"run", "job", "--", "sh", "-c",
              "echo \"$ETCDLOCK_NAME $ETCDLOCK_KEY $ETCDLOCK_FENCING_TOKEN $ETCD_LOCK_KEY $ETCD_LOCK_REV\"; exit 3"});
  EXPECT_EQ(status, 3);
  std::istringstream fields(line);
  std::string name, key, token, etcd_key, etcd_rev;
  fields >> name >> key >> token >> etcd_key >> etcd_rev;
  EXPECT_EQ(name, "job");
  EXPECT_TRUE(key.starts_with(prefix_ + "/job/")) << line;
  EXPECT_GT(std::stol(token), 0);
  EXPECT_EQ(etcd_key, key);
  EXPECT_EQ(etcd_rev, token);
  EXPECT_EQ(entries("job"), 0) << "released after the command";
}

TEST_F(Cli, RunWithSeveralNamesHoldsThemAllAndSaysSo) {
  const auto [status, line] =
      finish({"run", "y", "x", "--", "sh", "-c",
              "echo \"$ETCDLOCK_NAMES $ETCDLOCK_NAME $ETCDLOCK_NAME_1 $ETCDLOCK_NAME_2 $ETCDLOCK_KEY_1 $ETCDLOCK_KEY_2 "
              "$ETCDLOCK_FENCING_TOKEN $ETCD_LOCK_KEY\"; exit 4"});
  EXPECT_EQ(status, 4);
  std::istringstream fields(line);
  std::string count, name, name1, name2, key1, key2, token, etcd_key;
  fields >> count >> name >> name1 >> name2 >> key1 >> key2 >> token >> etcd_key;
  EXPECT_EQ(count, "2") << line;
  EXPECT_EQ(name, "x");
  EXPECT_EQ(name1, "x");
  EXPECT_EQ(name2, "y");
  EXPECT_TRUE(key1.starts_with(prefix_ + "/x/")) << line;
  EXPECT_TRUE(key2.starts_with(prefix_ + "/y/")) << line;
  EXPECT_EQ(etcd_key, key1);
  EXPECT_GT(std::stol(token), 0);
  EXPECT_EQ(entries("x"), 0) << "released after the command";
  EXPECT_EQ(entries("y"), 0) << "released after the command";
  // One name after "--" is a command, as before.
  EXPECT_EQ(finish({"run", "x", "--", "sh", "-c", "echo $ETCDLOCK_NAME $ETCDLOCK_NAMES."}).second, "x .");
  EXPECT_EQ(finish({"run", "x", "y", "--"}).first, 64) << "no command";
  EXPECT_EQ(finish({"run", "-n", "2", "x", "y", "--", "true"}).first, 64) << "permits take one name";
}

TEST_F(Cli, RunWithSeveralNamesWaitsForEachAndStopsWhenOneIsLost) {
  auto holder = manager();
  auto y = holder->get_lock("y");
  y->lock();
  EXPECT_EQ(finish({"run", "x", "y", "--try", "--", "true"}).first, 73);
  EXPECT_EQ(finish({"run", "x", "y", "--timeout", "300ms", "--", "true"}).first, 75);
  EXPECT_EQ(entries("x"), 0) << "a waiter key was left";
  EXPECT_EQ(entries("y"), 1) << "a waiter key was left";
  y->unlock();
  auto run = etcdlock({"run", "x", "y", "--", "sh", "-c", "echo started; sleep 30"});
  ASSERT_EQ(run.read_line(), "started");
  // Opposite order, while the first holds both: waits.
  auto second = etcdlock({"run", "y", "x", "--", "sh", "-c", "echo second"});
  EXPECT_EQ(second.read_line(500ms), std::nullopt) << "both commands held y and x at once";
  auto admin = manager();
  ASSERT_TRUE(admin->force_unlock("y"));
  EXPECT_EQ(run.wait(), 76);
  EXPECT_EQ(second.read_line(), "second");
  EXPECT_EQ(second.wait(), 0);
  EXPECT_TRUE(eventually([&] { return entries("x") == 0 && entries("y") == 0; }));
}

TEST_F(Cli, TryAndTimeoutGiveUpWithTheirOwnStatus) {
  auto holder = manager();
  auto lock = holder->get_lock("job");
  lock->lock();
  EXPECT_EQ(finish({"run", "job", "--try", "--", "true"}).first, 73);
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(finish({"run", "job", "--timeout", "300ms", "--", "true"}).first, 75);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_EQ(entries("job"), 1) << "a waiter key was left";
  lock->unlock();
  EXPECT_EQ(finish({"run", "job", "--try", "--", "true"}).first, 0);
}

TEST_F(Cli, LostLockStopsTheCommand) {
  auto run = etcdlock({"run", "job", "--", "sh", "-c", "echo started; sleep 30"});
  ASSERT_EQ(run.read_line(), "started");
  auto admin = manager();
  ASSERT_TRUE(admin->force_unlock("job"));
  EXPECT_EQ(run.wait(), 76);
}

TEST_F(Cli, CommandThatIgnoresSigtermIsKilledAfterKillAfter) {
  auto run = etcdlock({"run", "job", "--kill-after", "300ms", "--", "sh", "-c",
                       "trap '' TERM; echo started; while :; do sleep 0.05; done"});
  ASSERT_EQ(run.read_line(), "started");
  auto admin = manager();
  ASSERT_TRUE(admin->force_unlock("job"));
  EXPECT_EQ(run.wait(), 76);
}

// By default a command that ignores SIGTERM is killed within the lease's loss
// margin, before etcd could let another holder in; a longer --kill-after is
// refused. What must fit is the command's death, not etcdlock's exit (its
// release and its own exit come after; under AddressSanitizer on a loaded
// machine they took the whole to 1044 ms against a margin of 1000).
TEST_F(Cli, DefaultKillAfterFitsInTheLossMargin) {
  auto run =
      etcdlock({"run", "job", "--ttl", "5s", "--", "sh", "-c", "trap '' TERM; echo $$; while :; do sleep 0.05; done"});
  const std::string command = run.read_line().value_or("");
  ASSERT_FALSE(command.empty());
  // Gone, or a zombie that the shim has yet to reap: dead either way.
  const auto dead = [&] {
    std::ifstream stat_file("/proc/" + command + "/stat");
    std::string stat;
    if (!std::getline(stat_file, stat)) return true;
    const auto close = stat.rfind(')');
    return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z';
  };
  auto admin = manager();
  const auto lost_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(admin->force_unlock("job"));
  while (!dead() && std::chrono::steady_clock::now() - lost_at < 10s) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - lost_at, loss_margin(5s));
  EXPECT_EQ(run.wait(), 76);
  EXPECT_EQ(finish({"run", "job", "--ttl", "30s", "--kill-after", "10s", "--", "true"}).first, 64);
  EXPECT_EQ(finish({"run", "job", "--ttl", "30s", "--kill-after", "4s", "--", "true"}).first, 0);
}

TEST_F(Cli, SigtermIsForwardedAndTheLockReleased) {
  auto run = etcdlock({"run", "job", "--", "sh", "-c",
                       "trap 'echo got TERM; exit 0' TERM; echo started; while :; do sleep 0.05; done"});
  ASSERT_EQ(run.read_line(), "started");
  run.signal(SIGTERM);
  EXPECT_EQ(run.read_line(), "got TERM");
  EXPECT_EQ(run.wait(), 0);
  EXPECT_EQ(entries("job"), 0);
}

TEST_F(Cli, SigintWhileWaitingLeavesNoKey) {
  auto holder = manager();
  auto lock = holder->get_lock("job");
  lock->lock();
  auto run = etcdlock({"run", "job", "--", "true"});
  ASSERT_TRUE(eventually([&] { return entries("job") == 2; }));
  run.signal(SIGINT);
  EXPECT_EQ(run.wait(), 128 + SIGINT);
  EXPECT_EQ(entries("job"), 1);
}

TEST_F(Cli, ListAndInfoForPeopleAndScripts) {
  auto holder = manager();
  auto lock = holder->get_lock("jobs/nightly");
  lock->lock();
  auto [status, header] = finish({"list"});
  EXPECT_EQ(status, 0);
  EXPECT_TRUE(header.starts_with("NAME")) << header;
  auto [json_status, json_line] = finish({"list", "--json"});
  EXPECT_EQ(json_status, 0);
  const auto rows = nlohmann::json::parse(json_line);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]["name"], "jobs/nightly");
  EXPECT_EQ(rows[0]["key"], lock->key());
  EXPECT_EQ(rows[0]["fencing_token"], lock->fencing_token());
  EXPECT_EQ(rows[0]["waiters"], 0);
  EXPECT_GT(rows[0]["ttl_remaining_s"].get<int>(), 0);
  EXPECT_TRUE(rows[0]["created_at"].is_string());
  const auto info = nlohmann::json::parse(finish({"info", "jobs/nightly", "--json"}).second);
  EXPECT_EQ(info["owner"], rows[0]["owner"]);
  EXPECT_EQ(nlohmann::json::parse(finish({"list", "other", "--json"}).second).size(), 0u);
  EXPECT_TRUE(nlohmann::json::parse(finish({"info", "free", "--json"}).second).is_null());
}

TEST_F(Cli, StatusShowsEveryHolderAndWaiterInOrder) {
  auto options = this->options();
  options.owner = "nightly-1";
  LockManager holder(options);
  auto lock = holder.get_lock("jobs/nightly");
  lock->lock();
  options.owner = "nightly-2";
  LockManager waiter_manager(options);
  auto waiting = waiter_manager.get_lock("jobs/nightly");
  std::thread waiter([&] { std::lock_guard guard(*waiting); });
  ASSERT_TRUE(eventually([&] { return entries("jobs/nightly") == 2; }));

  auto status = etcdlock({"status", "jobs/"});
  std::vector<std::string> lines;
  while (auto line = status.read_line(5s)) lines.push_back(*line);
  EXPECT_EQ(status.wait(), 0);
  ASSERT_EQ(lines.size(), 3u) << ::testing::PrintToString(lines);
  EXPECT_TRUE(lines[0].starts_with("NAME")) << lines[0];
  EXPECT_NE(lines[1].find("holder"), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find("nightly-1"), std::string::npos) << lines[1];
  EXPECT_NE(lines[2].find("waiter 1"), std::string::npos) << lines[2];
  EXPECT_NE(lines[2].find("nightly-2"), std::string::npos) << lines[2];

  const auto status_json = nlohmann::json::parse(finish({"status", "--json"}).second);
  EXPECT_EQ(status_json["deadlocks"], nlohmann::json::array());
  const auto& rows = status_json["locks"];
  ASSERT_EQ(rows.size(), 1u);
  const auto& queue = rows[0]["queue"];
  ASSERT_EQ(queue.size(), 2u);
  EXPECT_EQ(queue[0]["owner"], "nightly-1");
  EXPECT_EQ(queue[0]["holds"], true);
  EXPECT_EQ(queue[0]["fencing_token"], lock->fencing_token());
  EXPECT_EQ(queue[1]["owner"], "nightly-2");
  EXPECT_EQ(queue[1]["holds"], false);
  EXPECT_TRUE(queue[1]["created_at"].is_string());
  EXPECT_EQ(rows[0]["waiters"], 1);
  EXPECT_EQ(finish({"status", "other/"}).second, "no locks held or waited for under " + prefix_ + "/other/");
  EXPECT_EQ(finish({"status", "/bad"}).first, 64);
  lock->unlock();
  waiter.join();
}

TEST_F(Cli, StatusNamesTheOtherLocksOfAMultiLocksEntries) {
  auto holder = manager();
  auto both = holder->get_multi_lock({"jobs/b", "jobs/a"});
  both->lock();
  auto status = etcdlock({"status", "jobs/"});
  std::vector<std::string> lines;
  while (auto line = status.read_line(5s)) lines.push_back(*line);
  EXPECT_EQ(status.wait(), 0);
  ASSERT_EQ(lines.size(), 3u) << ::testing::PrintToString(lines);
  EXPECT_NE(lines[0].find("WITH"), std::string::npos) << lines[0];
  EXPECT_TRUE(lines[1].starts_with("jobs/a") && lines[1].ends_with("jobs/b")) << lines[1];
  EXPECT_TRUE(lines[2].starts_with("jobs/b") && lines[2].ends_with("jobs/a")) << lines[2];
  // The entries name their set themselves: a listing of one name shows the
  // other, and so does `info` in JSON.
  auto one = etcdlock({"status", "jobs/a"});
  lines.clear();
  while (auto line = one.read_line(5s)) lines.push_back(*line);
  EXPECT_EQ(one.wait(), 0);
  ASSERT_EQ(lines.size(), 2u) << ::testing::PrintToString(lines);
  EXPECT_TRUE(lines[1].starts_with("jobs/a") && lines[1].ends_with("jobs/b")) << lines[1];
  const auto [info_status, info_line] = finish({"info", "jobs/b", "--json"});
  EXPECT_EQ(info_status, 0);
  EXPECT_EQ(nlohmann::json::parse(info_line)["queue"][0]["multi_lock_names"],
            nlohmann::json::array({"jobs/a", "jobs/b"}))
      << info_line;
  both->unlock();
}

// Keys of other clients need not be UTF-8 nor free of newlines: JSON stays
// valid and a table line stays one line.
TEST_F(Cli, ForeignKeysCannotBreakTheOutput) {
  put(raw_, prefix_ + "/bad\xffname/694d7a1c2b3e0f11", "");
  put(raw_, prefix_ + "/a\nb  holder  forged/694d7a1c2b3e0f12", "");
  for (const char* command : {"status", "list"}) {
    const auto [status, line] = finish({command, "--json"});
    EXPECT_EQ(status, 0) << command;
    const auto json = nlohmann::json::parse(line);
    EXPECT_EQ((json.is_array() ? json : json["locks"]).size(), 2u) << command << ": " << line;
  }
  auto status = etcdlock({"status"});
  std::vector<std::string> lines;
  while (auto line = status.read_line(5s)) lines.push_back(*line);
  EXPECT_EQ(status.wait(), 0);
  ASSERT_EQ(lines.size(), 3u) << ::testing::PrintToString(lines);
  EXPECT_NE(lines[1].find("a\\nb"), std::string::npos) << lines[1];
}

TEST_F(Cli, WatchPrintsEachChangeAsItHappens) {
  auto watch = etcdlock({"watch", "jobs", "--json"});
  const auto ready = watch.read_line();
  ASSERT_TRUE(ready) << "no first line";
  EXPECT_EQ(nlohmann::json::parse(*ready)["watching"], prefix_ + "/jobs");
  auto options = this->options();
  options.owner = "a";
  LockManager a(options);
  options.owner = "b";
  LockManager b(options);
  auto held = a.get_lock("jobs");
  held->lock();
  auto waiting = b.get_lock("jobs");
  std::thread waiter([&] { waiting->lock(); });
  ASSERT_TRUE(eventually([&] { return entries("jobs") == 2; }));
  held->unlock();
  waiter.join();
  b.close();

  std::vector<std::string> seen;
  for (int i = 0; i < 5; ++i) {
    const auto line = watch.read_line();
    ASSERT_TRUE(line) << "after " << ::testing::PrintToString(seen);
    const auto event = nlohmann::json::parse(*line);
    seen.push_back(event["event"].get<std::string>() + " " + event["entry"]["owner"].get<std::string>() +
                   (event["lease_ended"].get<bool>() ? " (lease ended)" : ""));
    EXPECT_EQ(event["name"], "jobs");
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"acquired a", "queued b", "released a", "acquired b",
                                            "released b (lease ended)"}));
  watch.signal(SIGINT);
  EXPECT_EQ(watch.wait(), 0);

  auto text = etcdlock({"watch"});
  ASSERT_EQ(text.read_line(), "watching " + prefix_ + "/* (interrupt to stop)");
  auto again = a.get_lock("jobs");
  again->lock();
  const auto line = text.read_line();
  ASSERT_TRUE(line);
  EXPECT_NE(line->find("  acquired  jobs  owner=a lease="), std::string::npos) << *line;
  again->unlock();
  text.signal(SIGTERM);
  EXPECT_EQ(text.wait(), 0);
}

TEST_F(Cli, UnlockForceAndRevoke) {
  auto holder = manager();
  auto lock = holder->get_lock("job");
  lock->lock();
  EXPECT_EQ(finish({"unlock", "job"}).first, 64) << "--force is required";
  EXPECT_EQ(finish({"unlock", "--force", "job"}).first, 0);
  EXPECT_TRUE(eventually([&] { return !lock->held(); }));
  EXPECT_EQ(finish({"unlock", "--force", "job"}).first, 74);
  auto other = holder->get_lock("job2");  // revoke acts only on leases with a lock under the prefix
  other->lock();
  char lease[17];
  std::snprintf(lease, sizeof lease, "%llx", static_cast<unsigned long long>(holder->lease_id()));
  EXPECT_EQ(finish({"revoke", lease}).first, 0);
  EXPECT_EQ(finish({"revoke", lease}).first, 74);
  EXPECT_EQ(finish({"revoke", "not-hex"}).first, 64);
}

TEST_F(Cli, BadInputGetsAClearErrorAndAStatus) {
  EXPECT_EQ(finish({"--no-such-flag", "list"}).first, 64);
  EXPECT_EQ(finish({"run", "job"}).first, 64) << "missing command";
  EXPECT_EQ(finish({"run", "a//b", "--", "true"}).first, 64);
  EXPECT_EQ(finish({"run", "job", "--timeout", "soon", "--", "true"}).first, 64);
  EXPECT_EQ(finish({}).first, 64) << "no subcommand";
  EXPECT_EQ(finish({"run", "job", "--", "/no/such/command"}).first, 127);
  EXPECT_EQ(finish({"--help"}).first, 0);
  const auto started = std::chrono::steady_clock::now();
  ChildProcess unreachable({built_program("../tools/cli/etcdlock"),
                            "--endpoints=127.0.0.1:" + std::to_string(free_port()), "--dial-timeout=300ms", "list"});
  EXPECT_EQ(unreachable.wait(), 69);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
}

TEST_F(Cli, EtcdlockRunAndEtcdctlLockExcludeEachOther) {
  auto ours = etcdlock({"run", "x", "--", "sh", "-c", "echo ours; sleep 1; echo ours-done"});
  ASSERT_EQ(ours.read_line(), "ours");
  ChildProcess theirs(
      {"etcdctl", "--endpoints=" + etcd_.endpoints_csv(), "lock", prefix_ + "/x", "--", "sh", "-c", "echo theirs"});
  EXPECT_EQ(theirs.read_line(500ms), std::nullopt) << "etcdctl got the lock while etcdlock run held it";
  EXPECT_EQ(ours.read_line(), "ours-done");
  EXPECT_EQ(ours.wait(), 0);
  EXPECT_EQ(theirs.read_line(), "theirs");
  EXPECT_EQ(theirs.wait(), 0);
}

TEST_F(Cli, ElectHoldsTheLeadershipUntilSigintAndLeaderShowsIt) {
  auto elect = etcdlock({"elect", "e", "first"});
  const auto key = elect.read_line();
  ASSERT_TRUE(key && key->starts_with(prefix_ + "/e/"));
  EXPECT_EQ(elect.read_line(), "first");
  auto leader = etcdlock({"leader", "e"});
  EXPECT_EQ(leader.read_line(), key);
  EXPECT_EQ(leader.read_line(), "first");
  EXPECT_EQ(leader.wait(), 0);
  const auto json = finish({"leader", "e", "--json"});
  EXPECT_EQ(nlohmann::json::parse(json.second)["leader"]["value"], "first");
  ChildProcess etcdctl({"etcdctl", "--endpoints=" + etcd_.endpoints_csv(), "elect", "-l", prefix_ + "/e"});
  EXPECT_EQ(etcdctl.read_line(), key);
  EXPECT_EQ(etcdctl.read_line(), "first");
  etcdctl.signal(SIGINT);
  etcdctl.wait();
  elect.signal(SIGINT);
  EXPECT_EQ(elect.wait(), 0);
  EXPECT_EQ(entries("e"), 0);
  EXPECT_EQ(finish({"leader", "e"}).second, "(no leader)");
}

TEST_F(Cli, ElectListenPrintsEachLeaderAndNoLeader) {
  auto listen = etcdlock({"elect", "--listen", "e"});
  EXPECT_EQ(listen.read_line(), "(no leader)");
  auto manager = this->manager();
  auto election = manager->get_election("e");
  election->campaign("v1");
  EXPECT_EQ(listen.read_line(), election->leader()->key);
  EXPECT_EQ(listen.read_line(), "v1");
  election->resign();
  EXPECT_EQ(listen.read_line(), "(no leader)");
  listen.signal(SIGTERM);
  EXPECT_EQ(listen.wait(), 0);
}

TEST_F(Cli, ElectRunsTheCommandOnlyWhileLeader) {
  auto elect = etcdlock({"elect", "e", "p", "--", "sh", "-c", "echo leading $ETCDLOCK_PROPOSAL; sleep 30"});
  ASSERT_EQ(elect.read_line(), "leading p");
  auto admin = manager();
  ASSERT_TRUE(admin->force_unlock("e"));  // the leader's key, as an operator would remove it
  EXPECT_EQ(elect.wait(), 76);
  EXPECT_EQ(finish({"elect", "e"}).first, 64) << "no proposal";
  EXPECT_EQ(finish({"elect", "--listen", "e", "p"}).first, 64) << "a proposal with --listen";
}

TEST_F(Cli, RunWithPermitsLetsAtMostNCommandsRun) {
  // The two commands hold their permits until the test lets them go, however
  // slowly the machine runs (sanitizers).
  const auto go = std::filesystem::temp_directory_path() / ("etcdlock-permits-go-" + std::to_string(getpid()));
  std::filesystem::remove(go);
  const std::string hold = "echo in $ETCDLOCK_PERMITS; while [ ! -e '" + go.string() + "' ]; do sleep 0.05; done";
  auto first = etcdlock({"run", "-n", "2", "jobs", "--", "sh", "-c", hold});
  auto second = etcdlock({"run", "-n", "2", "jobs", "--", "sh", "-c", hold});
  EXPECT_EQ(first.read_line(), "in 2");
  EXPECT_EQ(second.read_line(), "in 2");
  auto third = etcdlock({"run", "-n", "2", "jobs", "--", "sh", "-c", "echo in"});
  EXPECT_EQ(third.read_line(500ms), std::nullopt) << "a third command ran beside two";
  EXPECT_EQ(finish({"run", "-n", "2", "--try", "jobs", "--", "true"}).first, 73);
  std::ofstream{go};
  EXPECT_EQ(first.wait(), 0);
  EXPECT_EQ(third.read_line(5s), "in");
  EXPECT_EQ(second.wait(), 0);
  EXPECT_EQ(third.wait(), 0);
  EXPECT_EQ(entries("jobs"), 0);
  std::filesystem::remove(go);
}

}  // namespace
}  // namespace etcdlock::testing
