// The controlling terminal, shared with the command. A shell with job control
// puts each job in a process group of its own and gives that group the
// terminal's foreground; `run` then puts its command in yet another group (so
// that it can signal the command's whole tree), which must get the foreground
// in turn: a process of a background group that reads the terminal is
// stopped by SIGTTIN, and would wait for ever, holding the lock.
#pragma once

#include <sys/types.h>

namespace etcdlock::cli {

// Moves the foreground of the caller's controlling terminal from process
// group `from` to `to`; false, doing nothing, when there is no controlling
// terminal or its foreground is another group. From a background group it
// needs SIGTTOU blocked or ignored (etcdlock and its shim block it).
bool pass_terminal(pid_t from, pid_t to);

// True when `process` leads its own process group and is alone in it: a
// shell with job control started it as a job of its own. Not so in a script
// without job control, where every process shares the script's group (the
// terminal stays there, so that Ctrl-C still reaches the script), nor in a
// pipeline, whose commands share the job's group (a pager after `run` reads
// the terminal). There the command runs in the background of the terminal.
bool is_a_job_of_its_own(pid_t process);

}  // namespace etcdlock::cli
