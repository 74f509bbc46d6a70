// What `run` and `elect` share: waiting for a lock or a leadership that a
// signal may interrupt, and running a command only while it is held.
//
// The guarantee: the command, and every process it starts, runs only while
// what it needs is held, or within the loss margin after the loss is
// signalled (before etcd can let anyone else in). To that end:
//   - it runs under the command shim (command_shim.h) in a process group of
//     its own, and dies with etcdlock: if etcdlock goes (SIGKILL, the OOM
//     killer, a crash), the shim kills it and all it started;
//   - SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded to its group;
//   - on a loss it gets SIGTERM, then SIGKILL after --kill-after, which
//     reaches the whole group and what left it; etcdlock exits and releases
//     only once every process of the command's tree is gone, after a normal
//     exit too;
//   - SIGTSTP, SIGTTIN and SIGTTOU (Ctrl-Z) stop the command's group (the
//     signal itself first, then SIGSTOP) and every process of its tree that
//     left the group, before etcdlock stops itself, and SIGCONT continues
//     them only if the hold is still alive: a stopped etcdlock never leaves
//     its command running unsupervised;
//   - as a shell's foreground job, the command's group takes the terminal's
//     foreground (terminal.h), and a stop of the command by the terminal
//     (Ctrl-Z, SIGTTIN), which the shim reports, stops etcdlock as above.
// What no supervisor can cover: a SIGSTOP sent to etcdlock alone (it cannot
// act while stopped; its command runs on, past the lease), and processes that
// leave the command's tree (a job handed to another service).
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <stop_token>
#include <string>
#include <vector>

namespace etcdlock::cli {

// Signals etcdlock handles itself, synchronously. Call before any thread
// starts: it blocks them, so that every thread inherits the mask.
sigset_t block_handled_signals();

// Waits for SIGINT, SIGTERM, SIGHUP or SIGQUIT (returns it), or for `lost`
// to be requested (returns 0). Ctrl-Z stops etcdlock as usual.
int wait_for_signal(const sigset_t& signals, const std::stop_token& lost = {});

// Runs `wait` with a stop token that SIGINT, SIGTERM, SIGHUP or SIGQUIT
// requests. Returns 0 when `wait` returned, or the signal whose request made
// it throw Error(errc::cancelled); other exceptions pass through.
int interruptible(const sigset_t& signals, const std::function<void(std::stop_token)>& wait);

// A command started under the shim.
struct Child {
  pid_t shim = -1;    // exits once the command and all it started are gone
  pid_t group = -1;   // the command's process group
  int lifeline = -1;  // our end of the shim's lifeline: closed, the shim kills the group
};

// Starts `command` under the shim, with etcdlock's environment (its own
// variables stripped) and `variables`. Returns 0 with `child` set, or, having
// said why on stderr, 126 (it could not be run) or 127 (not found).
int spawn(const std::vector<std::string>& command, const std::vector<std::string>& variables, Child& child);

// What the command runs under, as supervise() watches it.
struct Supervision {
  std::stop_token lost;                         // requested when the hold ends involuntarily
  std::function<bool()> still_held;             // asked when etcdlock is continued after a stop
  std::string what;                             // "lock \"x\"", for messages
  std::chrono::milliseconds kill_after{2'500};  // SIGTERM to SIGKILL after a loss
  int lost_status = 0;                          // the exit status after a loss
};

// Waits until the command and every process it started are gone, forwarding
// signals and acting on a loss as the file's comment says. Returns the
// command's exit status (128 + N for signal N), or `lost_status` after a loss.
int supervise(Child child, const sigset_t& signals, const Supervision& supervision);

// How often supervise() wakes without a signal: a --kill-after must leave
// room for it within the lease's loss margin.
inline constexpr std::chrono::milliseconds kSupervisionTick{100};

}  // namespace etcdlock::cli
