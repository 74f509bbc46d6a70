// The command shim: a small watchdog between etcdlock and its command, so
// that the command dies with its supervisor.
//
// `run` and `elect` do not start the command themselves. They start their own
// program in a hidden mode (kCommandShimFlag), which starts the command in a
// process group of its own and then watches two things:
//   - the lifeline, a socket whose other end only etcdlock holds. When it
//     closes (etcdlock exited, was killed with SIGKILL, by the OOM killer, or
//     crashed; or etcdlock escalates a stop to SIGKILL) the shim kills the
//     command's group and every process left of its tree;
//   - its children. The shim is a child subreaper (PR_SET_CHILD_SUBREAPER),
//     so every orphan of the command's tree is re-parented to it, even one
//     that left the group (setsid): it can reap them, kill them, and knows
//     when the last one is gone. It exits only then, with the command's own
//     status, so etcdlock's wait for the shim is a wait for the whole tree.
//
// Why not PR_SET_PDEATHSIG on the command alone: it is cleared when the
// command execs a setuid program, covers the direct child only (not what a
// shell script starts), and fires when the parent *thread* exits (etcdlock
// has many). A shim in its own group also survives a SIGKILL sent to
// etcdlock's job (`kill -9 %1`), which would kill a shim in etcdlock's group.
//
// The shim blocks every signal it can (etcdlock never sends it one, and it
// is in no group that a terminal or etcdlock signals): it is the one process
// that must act when everything else is stopped or gone. What it
// cannot cover: a SIGKILL aimed at the shim itself (etcdlock then kills the
// group and waits for it, see supervision.cc), and a SIGSTOP of etcdlock
// alone: etcdlock cannot act while stopped, and the shim cannot tell a stopped
// supervisor from a busy one.
#pragma once

namespace etcdlock::cli {

// What etcdlock writes to the shim over the lifeline, one byte each: it is
// about to stop the command's tree (a stop request), and to continue it. A
// stop of the command that etcdlock did not announce (Ctrl-Z at a terminal
// whose foreground is the command's group, SIGTTIN in the background) the
// shim reports to etcdlock with the same signal, which then stops the rest of
// the tree and itself, as the job its shell sees.
inline constexpr char kStoppingTheCommand = 'S';
inline constexpr char kContinuingTheCommand = 'C';

// argv[1] of the hidden mode: `etcdlock --internal-command-shim FD -- CMD...`.
// Not a flag anyone types; no lock name can start with "--".
inline constexpr const char* kCommandShimFlag = "--internal-command-shim";

// Runs the shim (argv as main() gets it). Sends the command's PID (its
// group's id) over the lifeline once started, and returns the command's exit
// status (128 + N for signal N), or 126/127 as a shell does when the command
// cannot be run or is not found.
int run_command_shim(int argc, char** argv);

}  // namespace etcdlock::cli
