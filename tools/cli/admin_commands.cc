#include "admin_commands.h"

#include <charconv>
#include <iostream>

#include "error_exit.h"
#include "etcdlock/etcdlock.h"
#include "output.h"

namespace etcdlock::cli {
namespace {

// Runs `action` with a manager; turns etcdlock errors into an exit status.
template <class Action>
int with_manager(const ManagerOptions& options, Action action) {
  try {
    LockManager manager(options);
    return action(manager);
  } catch (const Error& error) {
    std::cerr << "etcdlock: " << error.what() << "\n";
    return exit_status_for(error);
  }
}

}  // namespace

int list_locks(const ManagerOptions& options, const std::string& name_prefix, bool json) {
  return with_manager(options, [&](LockManager& manager) {
    const auto rows = manager.list(name_prefix);
    if (json) {
      print_json(std::cout, rows);
    } else if (rows.empty()) {
      std::cout << "no locks held or waited for under " << options.prefix << "/" << name_prefix << "\n";
    } else {
      print_table(std::cout, rows);
    }
    return kExitOk;
  });
}

int show_lock(const ManagerOptions& options, const std::string& name, bool json) {
  return with_manager(options, [&](LockManager& manager) {
    const auto row = manager.info(name);
    if (json) {
      print_json(std::cout, row);
    } else if (!row) {
      std::cout << "lock \"" << name << "\" is free\n";
    } else {
      print_table(std::cout, {*row});
    }
    return kExitOk;
  });
}

int force_unlock(ManagerOptions options, const std::string& name) {
  // The result is this command's one line of output; the library's warning
  // that says the same is for programs, not for the operator who asked.
  options.log_sink = stderr_log_sink(LogLevel::error);
  return with_manager(options, [&](LockManager& manager) {
    const auto holder = manager.info(name);
    if (!holder || !manager.force_unlock(name)) {
      std::cerr << "etcdlock: lock \"" << name << "\" has no holder to remove\n";
      return kExitNothingToDo;
    }
    std::cout << "force-unlocked \"" << name << "\": removed " << holder->key << " (owner " << holder->owner << ")\n";
    return kExitOk;
  });
}

int revoke_lease(const ManagerOptions& options, const std::string& lease) {
  std::string_view digits = lease;
  if (digits.starts_with("0x")) digits.remove_prefix(2);
  unsigned long long id = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), id, 16);
  if (digits.empty() || error != std::errc() || end != digits.data() + digits.size() || id == 0 ||
      id > static_cast<unsigned long long>(INT64_MAX)) {
    std::cerr << "etcdlock: invalid lease id \"" << lease << "\" (expected hex, as etcdctl prints it)\n";
    return kExitUsage;
  }
  return with_manager(options, [&](LockManager& manager) {
    if (!manager.revoke_lease(static_cast<std::int64_t>(id))) {
      std::cerr << "etcdlock: lease " << lease << " does not exist\n";
      return kExitNothingToDo;
    }
    std::cout << "revoked lease " << lease << "\n";
    return kExitOk;
  });
}

std::vector<Subcommand> add_admin_commands(CLI::App& app) {
  struct Flags {
    std::string name, name_prefix, lease;
    bool json = false, force = false;
  };
  auto flags = std::make_shared<Flags>();
  auto* list = app.add_subcommand("list", "list the locks whose names start with PREFIX: holder, waiters");
  list->add_option("name_prefix", flags->name_prefix, "a prefix of lock names");
  list->add_flag("--json", flags->json, "print JSON for scripts");
  auto* info = app.add_subcommand("info", "show the holder of a lock and its waiters");
  info->add_option("name", flags->name, "the lock's name")->required();
  info->add_flag("--json", flags->json, "print JSON for scripts");
  auto* unlock = app.add_subcommand("unlock", "remove the holder of a lock, whoever it is (admin)");
  unlock->add_option("name", flags->name, "the lock's name")->required();
  unlock->add_flag("--force", flags->force, "confirms removing another owner's hold (unlock does nothing without it)");
  auto* revoke = app.add_subcommand("revoke", "revoke a lease, ending every hold of its owner (admin)");
  revoke->add_option("lease_id", flags->lease, "the lease id in hex, as etcdctl and `info` print it")->required();
  return {
      {list, [flags](const ManagerOptions& options) { return list_locks(options, flags->name_prefix, flags->json); }},
      {info, [flags](const ManagerOptions& options) { return show_lock(options, flags->name, flags->json); }},
      {unlock,
       [flags](const ManagerOptions& options) {
         if (!flags->force) {
           std::cerr << "etcdlock: unlock removes whoever holds \"" << flags->name
                     << "\"; confirm with --force: etcdlock unlock --force " << flags->name << "\n";
           return kExitUsage;
         }
         return force_unlock(options, flags->name);
       }},
      {revoke, [flags](const ManagerOptions& options) { return revoke_lease(options, flags->lease); }},
  };
}

}  // namespace etcdlock::cli
