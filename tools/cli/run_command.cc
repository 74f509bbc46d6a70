#include "run_command.h"

#include <cstring>
#include <iostream>

#include "duration.h"
#include "error_exit.h"
#include "etcdlock/etcdlock.h"
#include "exit_codes.h"
#include "subcommand.h"
#include "supervision.h"

namespace etcdlock::cli {
namespace {

// Acquires the lock as RunOptions say; SIGINT and the like cancel the wait.
// Returns kExitOk when held, else the exit status.
int acquire(Lock& lock, const RunOptions& options, const sigset_t& signals) {
  int status = kExitOk;
  try {
    const int interrupted_by = interruptible(signals, [&](std::stop_token cancel) {
      bool acquired = true;
      if (options.try_once) {
        acquired = lock.try_lock();
      } else if (options.timeout) {
        acquired = lock.try_lock_for(*options.timeout, cancel);
      } else {
        lock.lock(cancel);
      }
      if (!acquired) {
        std::cerr << "etcdlock: lock \"" << options.name << "\" "
                  << (options.try_once ? "is held by another owner" : "was not acquired in time") << "\n";
        status = options.try_once ? kExitNotAcquired : kExitTimeout;
      }
    });
    if (interrupted_by != 0) return 128 + interrupted_by;
  } catch (const Error& error) {
    std::cerr << "etcdlock: " << error.what() << "\n";
    return exit_status_for(error);
  }
  return status;
}

// The lock's variables for the command, named as etcdctl lock names them too.
std::vector<std::string> lock_variables(const Lock& lock) {
  const auto token = std::to_string(lock.fencing_token());
  return {"ETCDLOCK_NAME=" + lock.name(), "ETCDLOCK_KEY=" + lock.key(), "ETCDLOCK_FENCING_TOKEN=" + token,
          "ETCD_LOCK_KEY=" + lock.key(), "ETCD_LOCK_REV=" + token};
}

}  // namespace

std::chrono::milliseconds longest_kill_after(std::chrono::seconds ttl) {
  return std::max(std::chrono::milliseconds(0), loss_margin(ttl) - 2 * kSupervisionTick);
}

int run_under_lock(const ManagerOptions& manager_options, const RunOptions& options) {
  const sigset_t signals = block_handled_signals();
  try {
    LockManager manager(manager_options);
    auto lock = manager.get_lock(options.name);
    if (const int status = acquire(*lock, options, signals); status != kExitOk) return status;
    const pid_t child = spawn(options.command, lock_variables(*lock));
    int status;
    if (child < 0) {
      std::cerr << "etcdlock: cannot run " << options.command.front() << ": " << std::strerror(-child) << "\n";
      status = -child == ENOENT ? kExitNotFound : kExitCannotExecute;
    } else {
      status = supervise(child, lock->lost_token(), "lock \"" + options.name + "\"", options.kill_after, signals,
                         kExitLockLost);
    }
    lock->unlock();
    return status;
  } catch (const Error& error) {
    std::cerr << "etcdlock: " << error.what() << "\n";
    return exit_status_for(error);
  }
}

Subcommand add_run(CLI::App& app) {
  struct Flags {
    RunOptions run;
    std::string ttl = "30s", timeout, kill_after;
  };
  auto flags = std::make_shared<Flags>();
  auto* command = app.add_subcommand("run", "hold a lock while a command runs: etcdlock run NAME -- CMD [ARGS...]");
  command->add_option("name", flags->run.name, "the lock's name")->required();
  command->add_option("command", flags->run.command, "the command and its arguments, after --")->required();
  command->add_option("--ttl", flags->ttl, "the lease TTL: how long the lock outlives a crash of etcdlock")
      ->check(kDuration)
      ->capture_default_str();
  command->add_option("--timeout", flags->timeout, "give up (exit 75) if not acquired within this time")->check(kDuration);
  command->add_flag("--try", flags->run.try_once, "give up at once (exit 73) if another owner holds the lock");
  command->add_option("--kill-after", flags->kill_after,
                      "after a lost lock, SIGKILL the command this long after SIGTERM (default: half the lease's "
                      "loss margin, a tenth of the TTL; at most the margin, so that it dies before its lease can)")
      ->check(kDuration);
  command->footer(
      "The command gets ETCDLOCK_NAME, ETCDLOCK_KEY and ETCDLOCK_FENCING_TOKEN, and ETCD_LOCK_KEY and\n"
      "ETCD_LOCK_REV as etcdctl lock sets them (ETCD_LOCK_REV is the fencing token). SIGINT, SIGTERM,\n"
      "SIGHUP and SIGQUIT are forwarded to its process group; the lock is released when it exits.");
  return {command, [flags](ManagerOptions options) {
            options.ttl = std::chrono::ceil<std::chrono::seconds>(parse_duration(flags->ttl));
            RunOptions run = flags->run;
            if (!flags->timeout.empty()) run.timeout = parse_duration(flags->timeout);
            const auto longest = longest_kill_after(options.ttl);
            run.kill_after = flags->kill_after.empty() ? loss_margin(options.ttl) / 2 : parse_duration(flags->kill_after);
            if (run.kill_after > longest) {
              std::cerr << "etcdlock: --kill-after " << flags->kill_after << " is too long for --ttl " << flags->ttl
                        << ": the lease of a lost lock can expire in etcd " << loss_margin(options.ttl).count()
                        << " ms after the loss, and the command must be dead by then; use at most "
                        << longest.count() << "ms, or a longer --ttl\n";
              return kExitUsage;
            }
            return run_under_lock(options, run);
          }};
}

}  // namespace etcdlock::cli
