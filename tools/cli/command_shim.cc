#include "command_shim.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "exit_codes.h"
#include "process_tree.h"
#include "terminal.h"

namespace etcdlock::cli {
namespace {

// While killing, how often the shim looks again for processes to kill:
// orphans reach it one generation at a time.
constexpr int kKillRoundMs = 20;
// How long after the command's exit its leftover processes are worth a note.
constexpr std::chrono::milliseconds kLeftoverNote{1000};

int status_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

bool is_job_control_stop(int signal) { return signal == SIGTSTP || signal == SIGTTIN || signal == SIGTTOU; }

// In the forked child: the command, with the signal mask etcdlock's own
// command would have had (none blocked), in a group of its own, which takes
// the terminal's foreground from etcdlock's when etcdlock is a shell's
// foreground job (`supervisor_group`, else 0).
[[noreturn]] void exec_command(char** command, pid_t supervisor_group) {
  setpgid(0, 0);
  // Before the command runs, so that its first read of the terminal finds it
  // in the foreground. SIGTTOU is still blocked here, as tcsetpgrp() needs.
  if (supervisor_group > 0) pass_terminal(supervisor_group, getpgrp());
  // Should the shim be killed together with etcdlock, before either can act,
  // the command at least dies with it (its own children are the group's and
  // etcdlock's concern; a setuid exec clears this, hence not the only guard).
  const pid_t shim = getppid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != shim) _exit(kExitCannotExecute);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  execvp(command[0], command);
  const int error = errno;
  std::fprintf(stderr, "etcdlock: cannot run %s: %s\n", command[0], std::strerror(error));
  _exit(error == ENOENT ? kExitNotFound : kExitCannotExecute);
}

}  // namespace

int run_command_shim(int argc, char** argv) {
  if (argc < 5 || std::strcmp(argv[3], "--") != 0) {
    std::fprintf(stderr, "etcdlock: %s is for etcdlock's own use\n", kCommandShimFlag);
    return kExitUsage;
  }
  int lifeline = std::atoi(argv[2]);
  fcntl(lifeline, F_SETFD, FD_CLOEXEC);  // the command must not hold it open
  // Blocked, not ignored: the command unblocks them and gets what was sent
  // to its group meanwhile. SIGCHLD is read from a signalfd.
  sigset_t blocked;
  sigfillset(&blocked);
  sigprocmask(SIG_SETMASK, &blocked, nullptr);
  sigset_t child_exits;
  sigemptyset(&child_exits);
  sigaddset(&child_exits, SIGCHLD);
  const int exits = signalfd(-1, &child_exits, SFD_CLOEXEC | SFD_NONBLOCK);
  if (exits < 0 || prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    std::fprintf(stderr, "etcdlock: cannot watch the command: %s\n", std::strerror(errno));
    return kExitCannotExecute;
  }
  // etcdlock, as long as it lives: it is told of the command's stops.
  const pid_t supervisor = getppid();
  const pid_t command = fork();
  if (command < 0) {
    std::fprintf(stderr, "etcdlock: cannot run %s: %s\n", argv[4], std::strerror(errno));
    return kExitCannotExecute;
  }
  if (command == 0) exec_command(argv + 4, is_a_job_of_its_own(supervisor) ? supervisor : 0);
  setpgid(command, command);  // as the child does: whichever runs first, the group exists
  // etcdlock signals the group by this id; the socket, not a pipe, so that
  // a write after etcdlock died fails instead of raising SIGPIPE.
  send(lifeline, &command, sizeof command, MSG_NOSIGNAL);

  int command_status = 0;
  bool command_exited = false;
  bool killing = false;
  bool noted = false;     // that the command exited and left processes running
  bool stopping = false;  // etcdlock announced a stop of the tree, and no continue since
  std::chrono::steady_clock::time_point exited_at;
  // What etcdlock wrote, up to now; its end closed (etcdlock is gone, or
  // gives up on the command) means nothing of it may run on unsupervised.
  const auto read_lifeline = [&] {
    if (lifeline < 0) return;
    char bytes[64];
    for (;;) {
      const ssize_t got = recv(lifeline, bytes, sizeof bytes, MSG_DONTWAIT);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (got <= 0) {
        killing = true;
        close(lifeline);
        lifeline = -1;  // poll() skips it from now on
        kill_everything(command);
        return;
      }
      for (ssize_t i = 0; i < got; ++i) {
        if (bytes[i] == kStoppingTheCommand) stopping = true;
        if (bytes[i] == kContinuingTheCommand) stopping = false;
      }
    }
  };
  for (;;) {
    // Reap what has exited; without children left, the tree is gone.
    for (;;) {
      int status = 0;
      const pid_t reaped = waitpid(-1, &status, WNOHANG | WUNTRACED);
      if (reaped < 0 && errno == ECHILD) return command_exited ? status_code(command_status) : kExitCannotExecute;
      if (reaped <= 0) break;
      if (WIFSTOPPED(status)) {
        if (reaped != command || !is_job_control_stop(WSTOPSIG(status))) continue;
        // etcdlock writes its announcement before it signals the group, so
        // a stop of its own making finds it here.
        read_lifeline();
        if (!stopping && !killing && getppid() == supervisor) kill(supervisor, WSTOPSIG(status));
        continue;
      }
      if (reaped == command) {
        command_status = status;
        command_exited = true;
        exited_at = std::chrono::steady_clock::now();
      }
    }
    if (killing) kill_everything(command);
    int timeout_ms = killing ? kKillRoundMs : -1;
    if (command_exited && !noted && !killing) {
      // Processes that are merely dying with the command are not worth a
      // word; what still runs a while later is (it holds up the release).
      const auto waited = std::chrono::steady_clock::now() - exited_at;
      if (waited >= kLeftoverNote) {
        noted = true;
        std::fprintf(stderr, "etcdlock: the command exited (status %d); waiting for the processes it started\n",
                     status_code(command_status));
      } else {
        timeout_ms = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(kLeftoverNote - waited).count());
      }
    }
    pollfd watched[2] = {{lifeline, POLLIN, 0}, {exits, POLLIN, 0}};
    if (poll(watched, 2, timeout_ms) < 0 && errno != EINTR) return kExitCannotExecute;
    if (lifeline >= 0 && watched[0].revents != 0) read_lifeline();
    if (watched[1].revents != 0) {
      signalfd_siginfo info;
      while (read(exits, &info, sizeof info) == sizeof info) {
      }
    }
  }
}

}  // namespace etcdlock::cli
