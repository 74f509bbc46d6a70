#include "run_command.h"

#include <cstring>
#include <functional>
#include <iostream>
#include <optional>
#include <stdexcept>

#include "duration.h"
#include "error_exit.h"
#include "etcdlock/etcdlock.h"
#include "exit_codes.h"
#include "loss_timing.h"
#include "subcommand.h"
#include "supervision.h"

namespace etcdlock::cli {
namespace {

// What the command runs under: a hold of the lock, or a semaphore's permit.
struct Holding {
  std::stop_token lost;
  std::vector<std::string> variables;  // for the command's environment
  std::function<void(std::error_code&)> release;
};

// Takes `acquire` as RunOptions say (try once, until a timeout, or for as
// long as it takes); SIGINT and the like cancel the wait. Returns kExitOk
// when held, else the exit status.
template <class Acquire>
int take(const RunOptions& options, const sigset_t& signals, Acquire acquire) {
  int status = kExitOk;
  try {
    const int interrupted_by = interruptible(signals, [&](std::stop_token cancel) {
      if (acquire(cancel)) return;
      std::cerr << "etcdlock: " << (options.permits > 0 ? "semaphore \"" : "lock \"") << options.name << "\" "
                << (options.try_once ? "is held by another owner" : "was not acquired in time") << "\n";
      status = options.try_once ? kExitNotAcquired : kExitTimeout;
    });
    if (interrupted_by != 0) return 128 + interrupted_by;
  } catch (const Error& error) {
    std::cerr << "etcdlock: " << error.what() << "\n";
    return exit_status_for(error);
  }
  return status;
}

// The lock, with its variables named as etcdctl lock names them too.
int hold_lock(LockManager& manager, const RunOptions& options, const sigset_t& signals, Holding& holding) {
  auto lock = manager.get_lock(options.name);
  const int status = take(options, signals, [&](std::stop_token cancel) {
    if (options.try_once) return lock->try_lock();
    if (options.timeout) return lock->try_lock_for(*options.timeout, cancel);
    lock->lock(cancel);
    return true;
  });
  if (status != kExitOk) return status;
  const auto token = std::to_string(lock->fencing_token());
  holding = {lock->lost_token(),
             {"ETCDLOCK_NAME=" + lock->name(), "ETCDLOCK_KEY=" + lock->key(), "ETCDLOCK_FENCING_TOKEN=" + token,
              "ETCD_LOCK_KEY=" + lock->key(), "ETCD_LOCK_REV=" + token},
             [lock](std::error_code& ec) { lock->unlock(ec); }};
  return kExitOk;
}

// One of `options.permits` permits: at most that many commands at once.
int hold_permit(LockManager& manager, const RunOptions& options, const sigset_t& signals, Holding& holding) {
  auto semaphore = manager.get_semaphore(options.name, options.permits);
  auto permit = std::make_shared<Permit>();
  const int status = take(options, signals, [&](std::stop_token cancel) {
    std::optional<Permit> taken;
    if (options.try_once) {
      taken = semaphore->try_acquire_permit();
    } else if (options.timeout) {
      taken = semaphore->try_acquire_permit_for(*options.timeout, cancel);
    } else {
      taken = semaphore->acquire_permit(cancel);
    }
    if (taken) *permit = std::move(*taken);
    return taken.has_value();
  });
  if (status != kExitOk) return status;
  holding = {permit->lost_token(),
             {"ETCDLOCK_NAME=" + options.name, "ETCDLOCK_KEY=" + permit->key(),
              "ETCDLOCK_FENCING_TOKEN=" + std::to_string(permit->fencing_token()), "ETCD_LOCK_KEY=" + permit->key(),
              "ETCD_LOCK_REV=" + std::to_string(permit->fencing_token()),
              "ETCDLOCK_PERMITS=" + std::to_string(options.permits)},
             [permit](std::error_code& ec) { permit->release(ec); }};
  return kExitOk;
}

// The command's status stands whatever the release says: it ran to its end
// under the hold. A release etcd did not answer is given up here all the
// same (the key goes in the background, or with the lease).
void report_release(const std::error_code& ec, const std::string& what, int status) {
  if (ec == errc::unavailable) {
    std::cerr << "etcdlock: etcd did not answer the release of the " << what
              << "; it is released here, and its key removed in the background or when its lease expires\n";
  } else if (ec == errc::lock_expired && status != kExitLockLost) {
    std::cerr << "etcdlock: the " << what << " was lost as the command ended\n";
  }
}

}  // namespace

int run_under_lock(const ManagerOptions& manager_options, const RunOptions& options) {
  const sigset_t signals = block_handled_signals();
  try {
    LockManager manager(manager_options);
    Holding holding;
    const int taken = options.permits > 0 ? hold_permit(manager, options, signals, holding)
                                          : hold_lock(manager, options, signals, holding);
    if (taken != kExitOk) return taken;
    const std::string what = (options.permits > 0 ? "permit of \"" : "lock \"") + options.name + "\"";
    Child child;
    int status = spawn(options.command, holding.variables, child);
    if (status == kExitOk) {
      const auto still_held = [&] {
        return !holding.lost.stop_requested() && manager.time_left() > std::chrono::milliseconds(0);
      };
      status = supervise(child, signals, {holding.lost, still_held, what, options.kill_after, kExitLockLost});
    }
    // The command and all it started are gone: only now may the next holder in.
    std::error_code ec;
    holding.release(ec);
    report_release(ec, what, status);
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
  command->add_option("--timeout", flags->timeout, "give up (exit 75) if not acquired within this time")
      ->check(kDuration);
  command->add_flag("--try", flags->run.try_once, "give up at once (exit 73) if another owner holds the lock");
  command
      ->add_option("-n,--permits", flags->run.permits,
                   "hold one of N permits of a semaphore instead: at most N commands at once, across hosts")
      ->check(CLI::Range(1, 1'000'000));
  command
      ->add_option("--kill-after", flags->kill_after,
                   "after a lost lock, SIGKILL the command this long after SIGTERM (default: half the lease's "
                   "loss margin, a tenth of the TTL; at most the margin, so that it dies before its lease can)")
      ->check(kDuration);
  command->footer(
      "The command gets ETCDLOCK_NAME, ETCDLOCK_KEY and ETCDLOCK_FENCING_TOKEN, and ETCD_LOCK_KEY and\n"
      "ETCD_LOCK_REV as etcdctl lock sets them (ETCD_LOCK_REV is the fencing token); with -n N, the\n"
      "permit's key and token, and ETCDLOCK_PERMITS=N. SIGINT, SIGTERM, SIGHUP and SIGQUIT are\n"
      "forwarded to its process group, Ctrl-Z stops it with etcdlock, and it dies with etcdlock. The\n"
      "lock is released once it and every process it started have exited.");
  return {command, [flags](ManagerOptions options) {
            RunOptions run = flags->run;
            try {
              const auto timing = parse_loss_timing(flags->ttl, flags->kill_after);
              options.ttl = timing.ttl;
              run.kill_after = timing.kill_after;
            } catch (const std::invalid_argument& error) {
              std::cerr << "etcdlock: " << error.what() << "\n";
              return kExitUsage;
            }
            if (!flags->timeout.empty()) run.timeout = parse_duration(flags->timeout);
            return run_under_lock(options, run);
          }};
}

}  // namespace etcdlock::cli
