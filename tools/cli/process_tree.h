// The processes a child subreaper answers for: etcdlock and its command shim
// both are one, so every process the command starts is, or becomes when its
// parent dies, a child of theirs, whatever its process group or session.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <vector>

namespace etcdlock::cli {

// SIGKILL to the command's group and to every process below the calling one
// (its children, theirs, ...), wherever their group: what left the group is
// still the command's doing.
void kill_everything(pid_t group);

// SIGSTOP to every process below `root` (its children, theirs, and so on)
// that is not stopped already, looking again until a look finds none left
// running: a stopped process starts no other. So what left the command's
// group (setsid, a shell's background job, a daemon) stops with it. Returns
// the PIDs it stopped, for continue_processes().
std::vector<pid_t> stop_descendants(pid_t root);

// How many processes are in process group `group`, as /proc shows it now.
std::size_t processes_in_group(pid_t group);

// SIGCONT to each of `stopped`.
void continue_processes(const std::vector<pid_t>& stopped);

}  // namespace etcdlock::cli
