// The processes a child subreaper answers for: etcdlock and its command shim
// both are one, so every process the command starts is, or becomes when its
// parent dies, a child of theirs, whatever its process group or session.
#pragma once

#include <sys/types.h>

#include <vector>

namespace etcdlock::cli {

// The PIDs whose parent is `parent`, read from /proc.
std::vector<pid_t> children_of(pid_t parent);

// SIGKILL to the command's group and to every child of the calling process,
// wherever its group: what left the group is still the command's doing.
void kill_everything(pid_t group);

}  // namespace etcdlock::cli
