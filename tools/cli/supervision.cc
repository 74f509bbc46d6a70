#include "supervision.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <optional>
#include <thread>

#include "command_shim.h"
#include "etcdlock/error.h"
#include "exit_codes.h"
#include "process_tree.h"
#include "terminal.h"

extern char** environ;

namespace etcdlock::cli {
namespace {

using Steady = std::chrono::steady_clock;

// How long a command has to act on a job-control signal (an editor restores
// the terminal) before SIGSTOP stops it whatever it does.
constexpr std::chrono::milliseconds kStopGrace{50};

sigset_t handled_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int signal : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGCHLD, SIGTSTP, SIGTTIN, SIGTTOU, SIGCONT}) {
    sigaddset(&set, signal);
  }
  return set;
}

bool is_forwarded(int signal) { return signal == SIGINT || signal == SIGTERM || signal == SIGHUP || signal == SIGQUIT; }
bool is_stop_request(int signal) { return signal == SIGTSTP || signal == SIGTTIN || signal == SIGTTOU; }

// Blocked, a stop request does not stop etcdlock: it stops itself, as the
// job its shell sees, and is continued by SIGCONT.
void stop_self() { kill(getpid(), SIGSTOP); }

// A SIGCONT is waiting to be taken: a quick `fg` came while etcdlock was
// stopping its command.
bool continue_pending() {
  sigset_t pending;
  sigpending(&pending);
  return sigismember(&pending, SIGCONT) == 1;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> result;
  for (auto& text : strings) result.push_back(text.data());
  result.push_back(nullptr);
  return result;
}

// Ours, without the variables etcdlock sets for its command, then `variables`.
std::vector<std::string> command_environment(const std::vector<std::string>& variables) {
  std::vector<std::string> environment;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view variable(*entry);
    const auto name = variable.substr(0, variable.find('=') + 1);
    const bool replaced = std::any_of(variables.begin(), variables.end(),
                                      [&](const std::string& ours) { return ours.starts_with(name); });
    if (!replaced) environment.emplace_back(variable);
  }
  environment.insert(environment.end(), variables.begin(), variables.end());
  return environment;
}

// Starts etcdlock's own program as the shim, in a process group of its own
// (no terminal or job signal reaches it), with `lifeline` as its end.
int spawn_shim(std::vector<std::string> argv, const std::vector<std::string>& variables, pid_t& pid) {
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attributes, &none);
  sigset_t defaults = handled_signals();
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  posix_spawnattr_setpgroup(&attributes, 0);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  auto environment = command_environment(variables);
  auto args = pointers(argv);
  auto envp = pointers(environment);
  const int error = posix_spawn(&pid, "/proc/self/exe", nullptr, &attributes, args.data(), envp.data());
  posix_spawnattr_destroy(&attributes);
  return error;
}

// The shim is gone without having killed the tree (someone killed the shim
// itself): kill what is left here, and wait until it is gone. etcdlock is a
// child subreaper, so the tree's orphans, in the command's group or not, are
// its children now: done when it has no child left (a zombie in the group,
// whose parent left the group, would keep a probe of the group alive).
void kill_tree_and_wait(pid_t group) {
  for (;;) {
    kill_everything(group);
    pid_t reaped = 0;
    while ((reaped = waitpid(-1, nullptr, WNOHANG)) > 0) {
    }
    if (reaped < 0 && errno == ECHILD) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

sigset_t block_handled_signals() {
  const sigset_t signals = handled_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

int wait_for_signal(const sigset_t& signals, const std::stop_token& lost) {
  std::stop_callback on_loss(lost, [] { kill(getpid(), SIGUSR1); });
  for (;;) {
    const timespec pause{0, std::chrono::nanoseconds(kSupervisionTick).count()};
    const int signal = sigtimedwait(&signals, nullptr, &pause);
    if (is_forwarded(signal)) return signal;
    if (is_stop_request(signal)) stop_self();
    if (lost.stop_requested()) return 0;
  }
}

int interruptible(const sigset_t& signals, const std::function<void(std::stop_token)>& wait) {
  std::stop_source cancel;
  std::atomic<bool> waiting{true};
  std::atomic<int> interrupted_by{0};
  std::thread watcher([&] {
    const timespec pause{0, 50'000'000};
    while (waiting) {
      const int signal = sigtimedwait(&signals, nullptr, &pause);
      if (is_stop_request(signal)) stop_self();  // nothing runs yet that could outlive the lock
      if (is_forwarded(signal)) {
        interrupted_by = signal;
        cancel.request_stop();
        return;
      }
    }
  });
  const auto stop_watching = [&] {
    waiting = false;
    watcher.join();
  };
  try {
    wait(cancel.get_token());
  } catch (const Error& error) {
    stop_watching();
    if (error.code() == errc::cancelled && interrupted_by != 0) return interrupted_by;
    throw;
  } catch (...) {
    stop_watching();
    throw;
  }
  stop_watching();
  return 0;
}

int spawn(const std::vector<std::string>& command, const std::vector<std::string>& variables, Child& child) {
  // Orphans of the command's tree come to etcdlock if the shim is killed.
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  int ends[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0) {
    std::cerr << "etcdlock: cannot run " << command.front() << ": " << std::strerror(errno) << "\n";
    return kExitCannotExecute;
  }
  // Only the shim's end is inherited, and only by the shim: etcdlock starts
  // no other process, and the shim marks it close-on-exec for the command.
  fcntl(ends[1], F_SETFD, 0);
  std::vector<std::string> argv = {"etcdlock", kCommandShimFlag, std::to_string(ends[1]), "--"};
  argv.insert(argv.end(), command.begin(), command.end());
  pid_t shim = -1;
  const int error = spawn_shim(std::move(argv), variables, shim);
  close(ends[1]);
  if (error != 0) {
    close(ends[0]);
    std::cerr << "etcdlock: cannot start the command's watchdog: " << std::strerror(error) << "\n";
    return kExitCannotExecute;
  }
  pid_t group = -1;
  ssize_t got = -1;
  do {
    got = recv(ends[0], &group, sizeof group, MSG_WAITALL);
  } while (got < 0 && errno == EINTR);
  if (got != static_cast<ssize_t>(sizeof group)) {  // the shim said why on stderr
    close(ends[0]);
    int status = 0;
    waitpid(shim, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) != 0 ? WEXITSTATUS(status) : kExitCannotExecute;
  }
  child = {shim, group, ends[0]};
  return kExitOk;
}

int supervise(Child child, const sigset_t& signals, const Supervision& supervision) {
  // The loss may come on any thread: it wakes the loop below with SIGUSR1.
  std::stop_callback on_loss(supervision.lost, [] { kill(getpid(), SIGUSR1); });
  bool lost = false;
  bool stopped = false;                      // the command's group, by a stop request
  std::vector<pid_t> stopped_outside_group;  // and what of its tree left the group
  auto kill_at = Steady::time_point::max();  // when SIGTERM turns into SIGKILL
  // The shim reports a stop of the command that etcdlock did not make; one
  // that etcdlock makes it is told of first (command_shim.h).
  const auto tell_shim = [&](char message) {
    if (child.lifeline >= 0) send(child.lifeline, &message, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
  };
  // A shell's foreground job: the command, in a group of its own, needs the
  // terminal's foreground to read it (terminal.h). Its shim passed it on at
  // the start; a shell's `fg` gives it back to etcdlock's group.
  // Once the command's group is empty (the command exited, and what it left
  // running left the group), the terminal comes back to etcdlock's: Ctrl-Z
  // and Ctrl-C must reach someone while etcdlock waits for the rest.
  bool group_gone = false;
  const auto pass_terminal_on = [&] {
    if (!group_gone && is_a_job_of_its_own(getpid())) pass_terminal(getpgrp(), child.group);
  };
  const auto take_terminal_back = [&] { pass_terminal(child.group, getpgrp()); };
  const auto give_up_on_the_command = [&] {
    kill(-child.group, SIGKILL);
    close(child.lifeline);  // the shim kills the rest, wherever it went
    child.lifeline = -1;
  };
  for (;;) {
    const timespec pause{0, std::chrono::nanoseconds(kSupervisionTick).count()};
    const int signal = sigtimedwait(&signals, nullptr, &pause);
    std::optional<int> shim_status;
    for (int status = 0;;) {
      const pid_t reaped = waitpid(-1, &status, WNOHANG);
      if (reaped <= 0) break;
      if (reaped == child.shim) shim_status = status;
    }
    if (shim_status) {
      if (WIFSIGNALED(*shim_status)) {
        std::cerr << "etcdlock: the command's watchdog was killed by signal " << WTERMSIG(*shim_status)
                  << "; killing the command\n";
        kill_tree_and_wait(child.group);
        if (!lost) lost = true;  // its own status is unknown
      }
      if (child.lifeline >= 0) close(child.lifeline);
      take_terminal_back();  // for what etcdlock says from now on
      return lost ? supervision.lost_status : WEXITSTATUS(*shim_status);
    }
    if (!group_gone && kill(-child.group, 0) != 0 && errno == ESRCH) {
      group_gone = true;
      take_terminal_back();
    }
    if (is_forwarded(signal)) kill(-child.group, signal);
    if (is_stop_request(signal) && !lost) {
      tell_shim(kStoppingTheCommand);
      kill(-child.group, signal);  // as a terminal would: it may tidy up first
      std::this_thread::sleep_for(kStopGrace);
      kill(-child.group, SIGSTOP);  // and stops, whatever it does with the signal
      // So does what left the group: a stop that outlasts the lease must
      // leave nothing of the command running beside the next holder's.
      // Added to, not replaced: a stop request may come while stopped (one
      // that came before etcdlock took a SIGCONT from its queue drops that
      // SIGCONT), and then finds those it stopped already stopped.
      for (const pid_t pid : stop_descendants(child.shim)) {
        if (std::find(stopped_outside_group.begin(), stopped_outside_group.end(), pid) == stopped_outside_group.end()) {
          stopped_outside_group.push_back(pid);
        }
      }
      stopped = true;
      // A stop signal discards every pending SIGCONT: stopping ourselves now
      // would drop a `fg` that came while the command was being stopped (the
      // grace above, the walk of its descendants), and leave etcdlock and its
      // command stopped for good. Taken next, that SIGCONT continues both.
      if (!continue_pending()) stop_self();
    }
    // `fg` of a job started in the background: continued while running.
    if (signal == SIGCONT && !stopped && !lost) pass_terminal_on();
    if (signal == SIGCONT && stopped && !lost) {
      // Continued after a stop that may have outlasted the lease: the
      // command runs again only while the hold does.
      if (supervision.still_held()) {
        tell_shim(kContinuingTheCommand);
        pass_terminal_on();
        kill(-child.group, SIGCONT);
        continue_processes(stopped_outside_group);
        stopped_outside_group.clear();
        stopped = false;
      } else {
        std::cerr << "etcdlock: " << supervision.what << " ran out while stopped; killing the command\n";
        lost = true;
        give_up_on_the_command();
      }
    }
    if (!lost && supervision.lost.stop_requested()) {
      lost = true;
      if (stopped) {
        // A stopped command cannot act on SIGTERM until continued, which it
        // must not be any more.
        std::cerr << "etcdlock: " << supervision.what << " was lost while stopped; killing the command\n";
        give_up_on_the_command();
      } else {
        std::cerr << "etcdlock: " << supervision.what << " was lost; stopping the command\n";
        kill(-child.group, SIGTERM);
        kill_at = Steady::now() + supervision.kill_after;
      }
    }
    if (Steady::now() >= kill_at) {
      std::cerr << "etcdlock: the command did not stop within " << supervision.kill_after.count()
                << " ms; killing it and all it started\n";
      give_up_on_the_command();
      kill_at = Steady::time_point::max();
    }
  }
}

}  // namespace etcdlock::cli
