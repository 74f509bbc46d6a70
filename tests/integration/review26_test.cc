// Review of issue 26 (cli-safety): reproductions of what the shim and the
// supervision still let through. Each test states the promise it checks and
// fails on main at 27ed88e. Commands append "<label> <ns>" marks to a file
// every 20 ms while they run, as in cli_safety_test.cc; two spans that
// overlap are two holders' commands running at once.
// Status after the fixes that followed this review: fixed, and passing here:
// a killed shim leaves nothing of the tree running (etcdlock kills and reaps
// every child, ending on ECHILD, not on a probe of the group: a zombie no
// longer hangs it); the command dies with the shim (PR_SET_PDEATHSIG) when
// both are killed at once; close() after a loss revokes the lost lease; the
// default --kill-after fits --ttl 1s; Ctrl-Z stops what left the group too;
// a shell's foreground job gives its command the terminal.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "child_process.h"
#include "lock_fixture.h"
#include "marked_commands.h"
#include "tcp_proxy.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;

std::string read_text(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// The parent PID of `pid`, or 0.
pid_t parent_of(pid_t pid) {
  const std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  char state = 0;
  long ppid = 0;
  if (std::sscanf(stat.c_str() + close + 1, " %c %ld", &state, &ppid) != 2) return 0;
  return static_cast<pid_t>(ppid);
}

char state_of(pid_t pid) {
  const std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return '?';
  return stat[close + 2];
}

// The PIDs whose parent is `parent`.
std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> children;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    if (parent_of(std::stoi(name)) == parent) children.push_back(std::stoi(name));
  }
  return children;
}

// `root` and what runs below it, with their states ("1234:S 1240:T ..."):
// what a failure shows of the tree.
std::string tree_states(pid_t root) {
  std::string text = std::to_string(root) + ":" + state_of(root);
  for (const pid_t child : children_of(root)) text += " (" + tree_states(child) + ")";
  return text;
}

// Whether `pid` is stopped. A shell stopped while it starts a command with
// vfork() shows D, not T: it waits, uninterruptibly, for its child, which was
// stopped before it could exec (seen under ThreadSanitizer: "7644:D
// (7652:T)"). Such a shell goes on only when that child is continued.
bool is_stopped(pid_t pid) {
  const char state = state_of(pid);
  if (state == 'T') return true;
  if (state != 'D') return false;
  for (const pid_t child : children_of(pid)) {
    if (state_of(child) == 'T') return true;
  }
  return false;
}

// The command shim that etcdlock `parent` started, or 0.
pid_t shim_of(pid_t parent) {
  for (const pid_t child : children_of(parent)) {
    if (read_text("/proc/" + std::to_string(child) + "/cmdline").find("--internal-command-shim") != std::string::npos) {
      return child;
    }
  }
  return 0;
}

class Review26 : public LockTest, protected MarkedCommands {
 protected:
  bool command_started() const {
    return eventually([&] { return read_text(marks_).find("P ") != std::string::npos; });
  }
  // The command's PID, as its "P" mark gives it, or 0.
  pid_t command_pid() const {
    std::ifstream marks(marks_);
    for (std::string label, value; marks >> label >> value;) {
      if (label == "P") return std::stoi(value);
    }
    return 0;
  }

  ChildProcess etcdlock(std::vector<std::string> args) {
    return ChildProcess(etcdlock_argv(etcd_.endpoints_csv(), prefix_, args));
  }

  // A worker that leaves the command's process group and session (as any
  // daemon does), records its PID for the cleanup and marks `label`.
  std::string escaping_worker(const std::string& label) const {
    return "setsid sh '" + script("escapee.sh", record_group() + "; " + marking(label)) + "' &";
  }
};

// Promise: "Ctrl-Z stops the command too", so that a stop that outlasts the
// lease never lets the next holder's command run beside this one.
// supervision.cc:225-227 stops only the command's process group
// (kill(-child.group, SIGTSTP/SIGSTOP)); a process of the command's tree that
// left the group (setsid, a shell's `set -m` job, any daemon) runs on while
// etcdlock is stopped, and the next holder starts once the lease expires.
// Fixed: etcdlock stops every process below the shim that is still running
// (process_tree.h, stop_descendants), and continues those only with the hold.
TEST_F(Review26, CtrlZLeavesAProcessThatLeftTheGroupRunningBesideTheNextHolder) {
  auto first = etcdlock({"run", "job", "--ttl", "2s", "--", "sh", "-c",
                         record_group() + "; " + escaping_worker("W") + " " + marking("A")});
  ASSERT_TRUE(marked("A") && marked("W"));
  auto next = etcdlock({"run", "job", "--", "sh", "-c", marking("B", 10)});
  ASSERT_TRUE(eventually([&] { return entries("job") == 2; }));
  first.signal(SIGTSTP);
  ASSERT_TRUE(marked("B", 20s)) << "the next holder never ran";
  EXPECT_EQ(next.wait(), 0);
  first.signal(SIGCONT);
  EXPECT_EQ(first.wait(), 76);
  expect_before("A", "B");  // holds: A's group was stopped
  expect_before("W", "B");  // fails: W ran through the stop
}

// Promise: if the shim itself is killed, "etcdlock then kills the group and
// waits for it" (command_shim.h:25-27), and run never releases while
// anything of the tree lives. kill_group_and_wait (supervision.cc:94-102, called at :217)
// kills the group only and returns once the group is empty: a process that
// left the group (re-parented to etcdlock, the subreaper) is neither killed
// nor waited for; etcdlock releases and exits, and the next holder's command
// runs beside it, for ever.
TEST_F(Review26, AKilledShimLeavesAProcessThatLeftTheGroupRunningAfterTheRelease) {
  auto first = etcdlock({"run", "job", "--ttl", "2s", "--", "sh", "-c",
                         record_group() + "; " + escaping_worker("W") + " " + marking("A")});
  ASSERT_TRUE(marked("A") && marked("W"));
  auto next = etcdlock({"run", "job", "--", "sh", "-c", marking("B", 10)});
  ASSERT_TRUE(eventually([&] { return entries("job") == 2; }));
  const pid_t shim = shim_of(first.pid());
  ASSERT_GT(shim, 0) << "no shim under etcdlock";
  ASSERT_EQ(kill(shim, SIGKILL), 0);
  EXPECT_EQ(first.wait(), 76);
  ASSERT_TRUE(marked("B", 20s)) << "the next holder never ran";
  EXPECT_EQ(next.wait(), 0);
  expect_before("A", "B");
  expect_before("W", "B");  // fails: W outlived etcdlock and ran beside B
}

// The shim and etcdlock killed together (`kill -9` of both, `pkill -9 -f
// etcdlock`, which matches the shim's command line too): nothing is left to
// kill the command, which runs on for ever; the lease expires after the TTL
// and the next holder's command runs beside it. The shim could bind its
// direct child with PR_SET_PDEATHSIG (it has one thread, so the caveat of
// command_shim.h:17-20 does not apply to it); README and command_shim.h do
// not name this case among the ones not covered.
TEST_F(Review26, ShimAndEtcdlockKilledTogetherLeaveTheCommandRunning) {
  auto first = etcdlock({"run", "job", "--ttl", "2s", "--", "sh", "-c", record_group() + "; " + marking("A")});
  ASSERT_TRUE(marked("A"));
  auto next = etcdlock({"run", "job", "--", "sh", "-c", marking("B", 10)});
  ASSERT_TRUE(eventually([&] { return entries("job") == 2; }));
  const pid_t shim = shim_of(first.pid());
  ASSERT_GT(shim, 0) << "no shim under etcdlock";
  // Together: stopped first, so that neither acts on the other's death.
  kill(shim, SIGSTOP);
  first.signal(SIGSTOP);
  first.signal(SIGKILL);
  kill(shim, SIGKILL);
  EXPECT_EQ(first.wait(), 128 + SIGKILL);
  ASSERT_TRUE(marked("B", 20s)) << "the next holder never ran";
  EXPECT_EQ(next.wait(), 0);
  expect_before("A", "B");  // fails: A ran on, unsupervised
}

// etcdlock with a pseudo-terminal as its controlling terminal, in a session
// of its own: started as a shell with job control starts a job (etcdlock
// leads its process group, the terminal's foreground), or as a script
// without job control starts a command (etcdlock in the script's group).
class TerminalSession {
 public:
  enum class Start { shell_job, script };

  TerminalSession(std::vector<std::string> argv, Start start) : start_(start) {
    master_ = posix_openpt(O_RDWR | O_NOCTTY);
    if (master_ < 0 || grantpt(master_) != 0 || unlockpt(master_) != 0) throw std::runtime_error("no pty");
    const std::string terminal = ptsname(master_);
    std::vector<char*> args;
    for (auto& arg : argv) args.push_back(arg.data());
    args.push_back(nullptr);
    leader_ = fork();
    if (leader_ < 0) throw std::runtime_error("fork failed");
    if (leader_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      setsid();  // a login shell's session: the terminal is ours, our group in its foreground
      const int slave = open(terminal.c_str(), O_RDWR);
      if (slave < 0) _exit(120);
      dup2(slave, 0);
      dup2(slave, 1);
      dup2(slave, 2);
      if (start == Start::script) {
        const pid_t run = fork();
        if (run == 0) {
          execv(args[0], args.data());
          _exit(127);
        }
        // As a shell without job control: a wait that sees exits only.
        int status = 0;
        while (waitpid(run, &status, 0) < 0 && errno == EINTR) {
        }
        _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
      }
      execv(args[0], args.data());
      _exit(127);
    }
    // Drains what the terminal echoes, so that no write to it blocks; ends
    // once no process has the terminal open (EIO).
    drain_ = std::thread([master = master_] {
      char buffer[256];
      while (read(master, buffer, sizeof buffer) > 0) {
      }
    });
  }
  ~TerminalSession() {
    if (const pid_t run = etcdlock(); run > 0 && run != leader_) kill(run, SIGKILL);  // the shim kills the command
    if (!ended_) {
      kill(leader_, SIGKILL);
      waitpid(leader_, nullptr, 0);
    }
    drain_.join();
    close(master_);
  }
  TerminalSession(const TerminalSession&) = delete;
  TerminalSession& operator=(const TerminalSession&) = delete;

  void type(const std::string& keys) const {
    ASSERT_EQ(write(master_, keys.data(), keys.size()), static_cast<ssize_t>(keys.size()));
  }
  // etcdlock's PID (0 when it is gone).
  pid_t etcdlock() const {
    if (ended_) return 0;
    if (start_ == Start::shell_job) return leader_;
    const auto children = children_of(leader_);
    return children.empty() ? 0 : children.front();
  }
  // The leader's exit status (etcdlock's, either way), or -1 after `timeout`.
  int wait(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(leader_, &status, WNOHANG) == leader_) {
        ended_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(20ms);
    }
    return -1;
  }

 private:
  const Start start_;
  int master_ = -1;
  pid_t leader_ = -1;
  bool ended_ = false;
  std::thread drain_;
};

// Was a hang: the command runs in a process group of its own, and was never
// the terminal's foreground group. Run from a terminal, a command that read
// it (a prompt, `psql`, `read`) got SIGTTIN and stopped; neither the shim nor
// etcdlock noticed, so `etcdlock run` hung for ever, holding the lock. Now
// the command's group takes the terminal's foreground from etcdlock's.
TEST_F(Review26, AShellsForegroundJobsCommandReadsTheTerminal) {
  TerminalSession session(etcdlock_argv(etcd_.endpoints_csv(), prefix_,
                                        {"run", "job", "--", "sh", "-c",
                                         record_group() + "; read line; echo \"R $line\" >> '" + marks_ + "'"}),
                          TerminalSession::Start::shell_job);
  ASSERT_TRUE(command_started()) << "the command never started";
  std::this_thread::sleep_for(300ms);
  session.type("hello\n");
  const bool answered = eventually([&] { return read_text(marks_).find("R hello") != std::string::npos; }, 5s);
  const pid_t command = command_pid();
  EXPECT_TRUE(answered) << "the command never read its input; its state: " << (command > 0 ? state_of(command) : '?')
                        << " (T: stopped by SIGTTIN, in a background group of the terminal)";
  EXPECT_EQ(session.wait(10s), 0);
  EXPECT_EQ(entries("job"), 0);
}

// Ctrl-Z at the terminal now reaches the command's group, not etcdlock's: the
// shim sees the command stop and tells etcdlock, which stops the rest of the
// tree and itself (so that the shell sees its job stopped); continued, the
// command reads on.
TEST_F(Review26, CtrlZAtTheTerminalStopsEtcdlockWithTheCommandUntilContinued) {
  TerminalSession session(etcdlock_argv(etcd_.endpoints_csv(), prefix_,
                                        {"run", "job", "--", "sh", "-c",
                                         record_group() + "; read a; echo \"R $a\" >> '" + marks_ +
                                             "'; read b; echo \"R $b\" >> '" + marks_ + "'"}),
                          TerminalSession::Start::shell_job);
  ASSERT_TRUE(command_started()) << "the command never started";
  std::this_thread::sleep_for(300ms);
  session.type("\x1a");  // the terminal's suspend character
  const pid_t run = session.etcdlock();
  EXPECT_TRUE(eventually([&] { return state_of(run) == 'T'; }, 5s)) << "etcdlock did not stop: " << state_of(run);
  EXPECT_EQ(state_of(command_pid()), 'T');
  EXPECT_EQ(entries("job"), 1);
  kill(run, SIGCONT);  // `fg`, without the shell's hand-over of the terminal
  session.type("hello\n");
  EXPECT_TRUE(eventually([&] { return read_text(marks_).find("R hello") != std::string::npos; }, 5s))
      << "the command did not go on; etcdlock " << state_of(run) << ", the command " << state_of(command_pid());
  session.type("bye\n");
  EXPECT_EQ(session.wait(10s), 0);
  EXPECT_NE(read_text(marks_).find("R bye"), std::string::npos);
  EXPECT_EQ(entries("job"), 0);
}

// In a script without job control etcdlock does not lead its group and keeps
// the terminal (Ctrl-C must still reach the script), so a command that reads
// it is stopped by SIGTTIN, as before. The shim tells etcdlock, which stops
// too: it no longer holds the lock for ever; its lease runs out, the next
// holder goes first, and continued, etcdlock kills the command unrun.
TEST_F(Review26, InAScriptACommandThatReadsTheTerminalStopsEtcdlockAndTheLockRunsOut) {
  TerminalSession session(etcdlock_argv(etcd_.endpoints_csv(), prefix_,
                                        {"run", "job", "--ttl", "2s", "--", "sh", "-c",
                                         record_group() + "; read line; echo \"R $line\" >> '" + marks_ + "'"}),
                          TerminalSession::Start::script);
  ASSERT_TRUE(command_started()) << "the command never started";
  const pid_t run = session.etcdlock();
  ASSERT_GT(run, 0);
  EXPECT_TRUE(eventually([&] { return state_of(run) == 'T'; }, 5s)) << "etcdlock did not stop: " << state_of(run);
  auto next =
      ChildProcess(etcdlock_argv(etcd_.endpoints_csv(), prefix_, {"run", "job", "--", "sh", "-c", marking("B", 10)}));
  ASSERT_TRUE(marked("B", 20s)) << "the next holder never ran";
  EXPECT_EQ(next.wait(), 0);
  kill(run, SIGCONT);
  EXPECT_EQ(session.wait(10s), 76);
  EXPECT_EQ(read_text(marks_).find("R "), std::string::npos) << "the command ran after its lock ran out";
}

// Review of the terminal hand-over (61fb948), three findings, each failing
// 5 of 5 runs there.
std::string quoted(const std::vector<std::string>& argv) {
  std::string text;
  for (const auto& arg : argv) text += " '" + arg + "'";
  return text;
}

// A stop request that reaches etcdlock after SIGCONT resumed it but before
// it took SIGCONT from its queue (Ctrl-Z right after `fg`) drops the pending
// SIGCONT (the kernel does), so etcdlock handles a stop while stopped. Its
// second look found the escapee stopped already and replaced the list of
// what it had stopped with an empty one: the escapee stayed stopped for ever,
// the shim waited for it, etcdlock held the lock for ever.
TEST_F(Review26, AStopRightAfterAContinueStillContinuesTheEscapeeWithTheHold) {
  const std::string pid_file = (directory_ / "escapee.pid").string();
  auto first = etcdlock({"run", "job", "--", "sh", "-c",
                         record_group() + "; setsid sh '" +
                             script("esc.sh", "echo $$ > '" + pid_file + "'; " + marking("W", 100)) + "' & " +
                             marking("A", 20)});
  ASSERT_TRUE(marked("A") && marked("W"));
  const pid_t escapee = std::stoi(read_text(pid_file));
  first.signal(SIGTSTP);
  // 15 s: under ThreadSanitizer with another test beside it, 5 s was once not
  // enough for both to stop (CI-like run, 2026-12-04; 3 of 3 passed alone).
  // Failed once more under ThreadSanitizer with 15 s (CI-like run of
  // bfae95a, beside another test; then passed 6 of 6 alone and 3 of 3 in
  // runs of all Review26 tests two at a time): the states say which of the
  // two did not stop.
  ASSERT_TRUE(eventually([&] { return state_of(first.pid()) == 'T' && is_stopped(escapee); }, 15s))
      << "etcdlock and its tree " << tree_states(first.pid()) << "; the escapee " << tree_states(escapee);
  first.signal(SIGCONT);  // `fg` ...
  first.signal(SIGTSTP);  // ... and Ctrl-Z at once
  ASSERT_TRUE(eventually([&] { return state_of(first.pid()) == 'T'; }, 5s)) << state_of(first.pid());
  std::this_thread::sleep_for(300ms);
  first.signal(SIGCONT);
  EXPECT_TRUE(eventually([&] { return !is_stopped(escapee); }, 5s))
      << "the escapee was never continued: " << tree_states(escapee);
  const bool ended = eventually([&] { return state_of(first.pid()) == 'Z'; }, 20s);
  EXPECT_TRUE(ended) << "etcdlock still runs, holding the lock: entries " << entries("job") << ", escapee "
                     << state_of(escapee);
  if (!ended) kill(-escapee, SIGKILL);  // its session (stopped children too): lets the shim end
  EXPECT_EQ(first.wait(), 0);
}

// `etcdlock run L -- CMD | PAGER` as a shell's job: the pager shares the
// job's group with etcdlock, and must keep the terminal. The hand-over gave
// it to the command's group, and the pager's first read stopped the job.
TEST_F(Review26, APagerAfterRunInAShellPipelineReadsTheTerminal) {
  const auto run = etcdlock_argv(etcd_.endpoints_csv(), prefix_,
                                 {"run", "job", "--", "sh", "-c", record_group() + "; seq 1 2000000"});
  const std::string pager = "{ read x </dev/tty; echo \"R $x\" >> '" + marks_ + "'; cat >/dev/null; }";
  TerminalSession session({"/bin/sh", "-c", "set -m;" + quoted(run) + " | " + pager},
                          TerminalSession::Start::shell_job);
  ASSERT_TRUE(command_started()) << "the command never started";
  std::this_thread::sleep_for(500ms);
  session.type("q\n");
  EXPECT_TRUE(eventually([&] { return read_text(marks_).find("R q") != std::string::npos; }, 5s))
      << "the pager never read the terminal";
  EXPECT_EQ(session.wait(15s), 0) << "lock entries now: " << entries("job");
}

// The command exits and leaves a process (a setsid daemon) that the shim
// waits for. The terminal's foreground was still the command's group, now
// empty: Ctrl-Z (and Ctrl-C) at the terminal reached no one. Now the
// terminal comes back to etcdlock's group once the command's is empty.
TEST_F(Review26, CtrlZAfterTheCommandExitedStopsEtcdlock) {
  TerminalSession session(
      etcdlock_argv(etcd_.endpoints_csv(), prefix_,
                    {"run", "job", "--", "sh", "-c",
                     record_group() + "; setsid sh '" + script("esc.sh", marking("W", 300)) + "' & exit 0"}),
      TerminalSession::Start::shell_job);
  ASSERT_TRUE(command_started() && marked("W"));
  std::this_thread::sleep_for(500ms);  // the command has exited; W runs on
  session.type("\x1a");
  const pid_t run = session.etcdlock();
  EXPECT_TRUE(eventually([&] { return state_of(run) == 'T'; }, 3s)) << "etcdlock did not stop: " << state_of(run);
  kill(run, SIGCONT);
  EXPECT_EQ(session.wait(30s), 0);
}

// Leak check: the command gets no descriptor of etcdlock's or the shim's
// (the lifeline, gRPC's sockets): only 0, 1, 2 and what the test process
// itself leaves inheritable.
TEST_F(Review26, TheCommandInheritsNoDescriptorOfEtcdlock) {
  auto run = etcdlock({"run", "job", "--", "sh", "-c", record_group() + "; exec sleep 30"});
  ASSERT_TRUE(eventually([&] { return read_text(marks_).find("P ") != std::string::npos; }));
  std::istringstream marks(read_text(marks_));
  std::string label;
  pid_t command = 0;
  marks >> label >> command;
  // The command has exec'ed sleep once its descriptors show no shell's.
  std::this_thread::sleep_for(300ms);
  const auto targets = [](const std::string& directory, bool inheritable_only) {
    std::map<int, std::string> found;
    for (const auto& entry : std::filesystem::directory_iterator(directory)) {
      std::error_code ec;
      const auto target = std::filesystem::read_symlink(entry.path(), ec);
      const int fd = std::stoi(entry.path().filename().string());
      if (ec) continue;
      if (inheritable_only) {
        const int flags = fcntl(fd, F_GETFD);
        if (flags < 0 || (flags & FD_CLOEXEC) != 0) continue;
      }
      found[fd] = target.string();
    }
    return found;
  };
  auto ours = targets("/proc/self/fd", true);
  std::string foreign;
  for (const auto& [fd, target] : targets("/proc/" + std::to_string(command) + "/fd", false)) {
    if (fd <= 2 || (ours.contains(fd) && ours[fd] == target)) continue;
    foreign += std::to_string(fd) + " -> " + target + "\n";
  }
  run.signal(SIGTERM);
  EXPECT_EQ(run.wait(), 128 + SIGTERM);
  EXPECT_EQ(foreign, "") << "descriptors the command got from etcdlock or its shim";
}

// Holds (measured): after a loss the whole tree is dead before etcd lets the
// next holder in, with the longest --kill-after allowed (run_command.cc:102,
// the margin less two ticks) and a command that ignores SIGTERM, even for a
// daemon tree that left the group: the shim kills it one generation at a
// time (command_shim.cc:61-64), but SIGCHLD wakes each round at once. A TTL
// of 3 s: margin 600 ms, --kill-after 400 ms. (At depth 200 the last process
// died about 460 ms after the command, 70 ms before the next holder's start:
// the slack is etcd's lessor granularity, not the 200 ms of run's.)
class Review26Margin : public Review26 {
 protected:
  void run_with_a_daemon_tree(int depth) {
    const auto endpoint = etcd_.endpoints()[0];
    TcpProxy link(std::stoi(endpoint.substr(endpoint.rfind(':') + 1)));
    // chain.sh N: a process whose child is chain.sh N-1; the last one marks W.
    const auto chain = script("chain.sh", "if [ $1 -gt 0 ]; then sh '" + (directory_ / "chain.sh").string() +
                                              "' $(($1-1)); : ; else " + record_group() + "; " + marking("W") + "; fi");
    const std::string command = "trap '" + mark("T") + "' TERM; " + record_group() + "; setsid sh '" + chain + "' " +
                                std::to_string(depth) + " & " + marking("A");
    auto first = ChildProcess(etcdlock_argv(
        link.endpoint(), prefix_, {"run", "job", "--ttl", "3s", "--kill-after", "400ms", "--", "sh", "-c", command}));
    ASSERT_TRUE(marked("A") && marked("W", 30s));
    auto next = etcdlock({"run", "job", "--", "sh", "-c", marking("B", 10)});
    ASSERT_TRUE(eventually([&] { return entries("job") == 2; }));
    link.pause();
    const bool told = marked("T", 20s);
    link.resume();
    ASSERT_TRUE(told) << "the first command was never told of the loss";
    EXPECT_EQ(first.wait(), 76);
    EXPECT_EQ(next.wait(), 0);
    expect_before("A", "B");
    expect_before("W", "B");
  }
};

TEST_F(Review26Margin, AShallowDaemonDiesWithinTheMargin) { run_with_a_daemon_tree(0); }
TEST_F(Review26Margin, ADaemonTree60DeepDiesWithinTheMargin) { run_with_a_daemon_tree(60); }

// Hang: the shim killed, kill_group_and_wait (supervision.cc:94-102, called at :217) loops
// until kill(-group, 0) fails. A process of the group whose parent left the
// group (here a shell that forked `sleep` and then became, by setsid, a
// process that never waits) stays a zombie of that parent, which is neither
// killed nor waited for: the group
// never empties, and etcdlock spins for ever, holding the lock.
TEST_F(Review26, AKilledShimWithAZombieInTheGroupHangsEtcdlock) {
  const std::string command =
      record_group() + "; sh -c '" + record_group() + "; sleep 1000 & exec setsid sleep 1000' & " + marking("A");
  auto first = etcdlock({"run", "job", "--ttl", "2s", "--", "sh", "-c", command});
  ASSERT_TRUE(marked("A"));
  std::this_thread::sleep_for(300ms);  // the subshell has called setsid
  const pid_t shim = shim_of(first.pid());
  ASSERT_GT(shim, 0);
  ASSERT_EQ(kill(shim, SIGKILL), 0);
  const bool exited = eventually([&] { return state_of(first.pid()) == 'Z'; }, 10s);
  EXPECT_TRUE(exited) << "etcdlock did not exit within 10 s of its shim's death (state " << state_of(first.pid())
                      << "); keys left: " << entries("job");
  // The hold lives on, renewed: the lock is held for ever.
  EXPECT_EQ(entries("job"), 0) << "the lock is still held";
}

// Usage: with --ttl 1s and no --kill-after, the default (half the margin,
// 125 ms; run_command.cc:165, elect_command.cc:102) exceeds the longest
// allowed (the margin less two ticks, 50 ms; run_command.cc:102-104) and run and elect refuse to start with
// "--kill-after  is too long" (an empty value: the user gave none).
TEST_F(Review26, TheDefaultKillAfterIsAcceptedForEveryTtl) {
  EXPECT_EQ(etcdlock({"run", "--ttl", "1s", "job", "--", "true"}).wait(), 0);
  EXPECT_EQ(etcdlock({"elect", "--ttl", "1s", "e", "p", "--", "true"}).wait(), 0);
}

// The library side of "a lost lease is not revoked". A holder whose renewals
// reach etcd but whose answers do not (the link holds etcd's replies) loses
// its hold at the local deadline while etcd has just renewed the lease: it
// lives there about a whole TTL more. The link heals at the loss.
class Review26Library : public LockTest {
 protected:
  using Steady = std::chrono::steady_clock;

  // Runs the scenario; `give_up` is what the holder does once it learns of
  // the loss. Returns how long the next holder waited after give_up returned.
  std::chrono::milliseconds wait_after_giving_up(
      const std::function<void(LockManager&, std::shared_ptr<Lock>&)>& give_up) {
    auto waiter_manager = manager(10s);
    auto waiting = waiter_manager->get_lock("x");
    const auto endpoint = etcd_.endpoints()[0];
    TcpProxy link(std::stoi(endpoint.substr(endpoint.rfind(':') + 1)));
    auto holder_options = options();
    holder_options.endpoints = {link.endpoint()};
    holder_options.ttl = 5s;
    LockManager holder_manager(holder_options);
    auto holding = holder_manager.get_lock("x");
    holding->lock();
    std::atomic<bool> lost{false};
    std::stop_callback on_loss(holding->lost_token(), [&] { lost = true; });
    std::atomic<bool> acquired{false};
    Steady::time_point acquired_at;
    std::thread waiter([&] {
      if (waiting->try_lock_for(30s)) {
        acquired_at = Steady::now();
        acquired = true;
        waiting->unlock();
      }
    });
    EXPECT_TRUE(eventually([&] { return entries("x") == 2; }));
    link.hold_replies();
    const bool lost_in_time = eventually([&] { return lost.load(); }, 15s);
    link.resume_replies();
    give_up(holder_manager, holding);
    const auto given_up_at = Steady::now();
    waiter.join();
    EXPECT_TRUE(lost_in_time);
    EXPECT_TRUE(acquired);
    return std::chrono::duration_cast<std::chrono::milliseconds>(acquired_at - given_up_at);
  }
};

// Holds: unlock() after the loss removes the entry, and the next holder is
// let in at once rather than when the lease expires.
TEST_F(Review26Library, UnlockAfterALossLetsTheNextHolderInAtOnce) {
  const auto waited = wait_after_giving_up([](LockManager&, std::shared_ptr<Lock>& lock) {
    std::error_code ec;
    lock->unlock(ec);
    EXPECT_EQ(ec, errc::lock_expired);
  });
  std::cout << "the next holder waited " << waited.count() << " ms after unlock\n";
  EXPECT_LT(waited, 1000ms);
}

// Fails: close() after the loss (as an application shutting down on a lost
// lock does) neither revokes the lost lease (session.cc:238, Session::end
// skips the revoke of a lost session) nor removes the entry
// (entry_removal.cc:8 and hold.cc:121: a closed manager leaves it to "the
// lease revoke", which never comes). lock_manager.h:134 promises that close()
// revokes the lease; the next holder waits until etcd expires it, here about
// a whole TTL (5 s) after the holder gave everything up.
TEST_F(Review26Library, CloseAfterALossLeavesTheEntryUntilTheLeaseExpires) {
  const auto waited = wait_after_giving_up([](LockManager& manager, std::shared_ptr<Lock>& lock) {
    manager.close();
    lock.reset();
  });
  std::cout << "the next holder waited " << waited.count() << " ms after close()\n";
  EXPECT_LT(waited, 1000ms) << "the entry of a closed manager blocked the next holder until its lease expired";
}

}  // namespace
}  // namespace etcdlock::testing
