#include "run_command.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <thread>

#include "duration.h"
#include "error_exit.h"
#include "etcdlock/etcdlock.h"
#include "exit_codes.h"
#include "subcommand.h"

extern char** environ;

namespace etcdlock::cli {
namespace {

using Steady = std::chrono::steady_clock;

// How often the supervising loop wakes without a signal.
constexpr std::chrono::milliseconds kSupervisionTick{100};

// Signals this command handles itself, synchronously, with sigtimedwait. They
// are blocked before any thread starts, so every thread inherits the mask
// and none of them takes the signals.
sigset_t handled_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int signal : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGCHLD}) sigaddset(&set, signal);
  return set;
}

bool is_forwarded(int signal) { return signal == SIGINT || signal == SIGTERM || signal == SIGHUP || signal == SIGQUIT; }

// Acquires the lock as RunOptions say; SIGINT and the like cancel the wait.
// Returns kExitOk when held, else the exit status.
int acquire(Lock& lock, const RunOptions& options, const sigset_t& signals) {
  std::stop_source cancel;
  std::atomic<bool> waiting{true};
  std::atomic<int> interrupted_by{0};
  std::thread watcher([&] {
    const timespec pause{0, 50'000'000};
    while (waiting) {
      const int signal = sigtimedwait(&signals, nullptr, &pause);
      if (is_forwarded(signal)) {
        interrupted_by = signal;
        cancel.request_stop();
        return;
      }
    }
  });
  int status = kExitOk;
  try {
    bool acquired = true;
    if (options.try_once) {
      acquired = lock.try_lock();
    } else if (options.timeout) {
      acquired = lock.try_lock_for(*options.timeout, cancel.get_token());
    } else {
      lock.lock(cancel.get_token());
    }
    if (!acquired) {
      std::cerr << "etcdlock: lock \"" << options.name << "\" "
                << (options.try_once ? "is held by another owner" : "was not acquired in time") << "\n";
      status = options.try_once ? kExitNotAcquired : kExitTimeout;
    }
  } catch (const Error& error) {
    status = error.code() == errc::cancelled ? 128 + interrupted_by.load() : exit_status_for(error);
    if (error.code() != errc::cancelled) std::cerr << "etcdlock: " << error.what() << "\n";
  }
  waiting = false;
  watcher.join();
  return status;
}

// The environment of the command: ours, with the lock's variables, named as
// etcdctl lock names them too.
std::vector<std::string> command_environment(const Lock& lock) {
  std::vector<std::string> environment;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view variable(*entry);
    if (variable.starts_with("ETCDLOCK_NAME=") || variable.starts_with("ETCDLOCK_KEY=") ||
        variable.starts_with("ETCDLOCK_FENCING_TOKEN=") || variable.starts_with("ETCD_LOCK_KEY=") ||
        variable.starts_with("ETCD_LOCK_REV=")) {
      continue;
    }
    environment.emplace_back(variable);
  }
  const auto token = std::to_string(lock.fencing_token());
  environment.push_back("ETCDLOCK_NAME=" + lock.name());
  environment.push_back("ETCDLOCK_KEY=" + lock.key());
  environment.push_back("ETCDLOCK_FENCING_TOKEN=" + token);
  environment.push_back("ETCD_LOCK_KEY=" + lock.key());
  environment.push_back("ETCD_LOCK_REV=" + token);
  return environment;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> result;
  for (auto& text : strings) result.push_back(text.data());
  result.push_back(nullptr);
  return result;
}

// Starts the command in a process group of its own, so that stopping it
// stops what it started too. Returns its PID, or -errno.
pid_t spawn(std::vector<std::string> command, std::vector<std::string> environment) {
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attributes, &none);
  sigset_t defaults = handled_signals();
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  posix_spawnattr_setpgroup(&attributes, 0);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  auto argv = pointers(command);
  auto envp = pointers(environment);
  pid_t pid = 0;
  const int error = posix_spawnp(&pid, argv[0], nullptr, &attributes, argv.data(), envp.data());
  posix_spawnattr_destroy(&attributes);
  return error == 0 ? pid : -error;
}

// Waits for the command, forwarding signals and stopping it if the lock is
// lost. Returns its exit status, or kExitLockLost.
int supervise(pid_t child, Lock& lock, const RunOptions& options, const sigset_t& signals) {
  // The loss may come on any thread: it wakes the loop below with SIGUSR1.
  std::stop_callback on_loss(lock.lost_token(), [] { kill(getpid(), SIGUSR1); });
  bool lost = false;
  auto kill_at = Steady::time_point::max();  // when SIGTERM turns into SIGKILL
  for (;;) {
    const timespec pause{0, std::chrono::nanoseconds(kSupervisionTick).count()};
    const int signal = sigtimedwait(&signals, nullptr, &pause);
    int status = 0;
    if (waitpid(child, &status, WNOHANG) == child) {
      if (lost) return kExitLockLost;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (is_forwarded(signal)) kill(-child, signal);
    if (!lost && lock.lost_token().stop_requested()) {
      lost = true;
      std::cerr << "etcdlock: lock \"" << options.name << "\" was lost; stopping the command\n";
      kill(-child, SIGTERM);
      kill_at = Steady::now() + options.kill_after;
    }
    if (Steady::now() >= kill_at) {
      std::cerr << "etcdlock: the command did not stop within " << options.kill_after.count()
                << " ms; killing it\n";
      kill(-child, SIGKILL);
      kill_at = Steady::time_point::max();
    }
  }
}

}  // namespace

std::chrono::milliseconds longest_kill_after(std::chrono::seconds ttl) {
  return std::max(std::chrono::milliseconds(0), loss_margin(ttl) - 2 * kSupervisionTick);
}

int run_under_lock(const ManagerOptions& manager_options, const RunOptions& options) {
  const sigset_t signals = handled_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  try {
    LockManager manager(manager_options);
    auto lock = manager.get_lock(options.name);
    if (const int status = acquire(*lock, options, signals); status != kExitOk) return status;
    const pid_t child = spawn(options.command, command_environment(*lock));
    int status;
    if (child < 0) {
      std::cerr << "etcdlock: cannot run " << options.command.front() << ": " << std::strerror(-child) << "\n";
      status = -child == ENOENT ? kExitNotFound : kExitCannotExecute;
    } else {
      status = supervise(child, *lock, options, signals);
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
