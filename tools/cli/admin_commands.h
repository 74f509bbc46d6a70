// `etcdlock list`, `info`, `unlock --force` and `revoke`: each returns the
// process's exit status (see exit_codes.h).
#pragma once

#include <string>

#include "etcdlock/options.h"
#include "subcommand.h"

namespace etcdlock::cli {

int list_locks(const ManagerOptions& options, const std::string& name_prefix, bool json);
int show_lock(const ManagerOptions& options, const std::string& name, bool json);
int force_unlock(ManagerOptions options, const std::string& name);
// `lease` as etcdctl prints lease ids: hex, with or without 0x.
int revoke_lease(const ManagerOptions& options, const std::string& lease);

}  // namespace etcdlock::cli
