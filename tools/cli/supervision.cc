#include "supervision.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <thread>

#include "etcdlock/error.h"

extern char** environ;

namespace etcdlock::cli {
namespace {

using Steady = std::chrono::steady_clock;

sigset_t handled_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int signal : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGCHLD}) sigaddset(&set, signal);
  return set;
}

bool is_forwarded(int signal) { return signal == SIGINT || signal == SIGTERM || signal == SIGHUP || signal == SIGQUIT; }

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> result;
  for (auto& text : strings) result.push_back(text.data());
  result.push_back(nullptr);
  return result;
}

// Ours, without the variables etcdlock sets for its command, then `variables`.
std::vector<std::string> command_environment(const std::vector<std::string>& variables) {
  std::vector<std::string> environment;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view variable(*entry);
    const auto name = variable.substr(0, variable.find('=') + 1);
    const bool replaced = std::any_of(variables.begin(), variables.end(),
                                      [&](const std::string& ours) { return ours.starts_with(name); });
    if (!replaced) environment.emplace_back(variable);
  }
  environment.insert(environment.end(), variables.begin(), variables.end());
  return environment;
}

}  // namespace

sigset_t block_handled_signals() {
  const sigset_t signals = handled_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

int wait_for_signal(const sigset_t& signals, const std::stop_token& lost) {
  std::stop_callback on_loss(lost, [] { kill(getpid(), SIGUSR1); });
  for (;;) {
    const timespec pause{0, std::chrono::nanoseconds(kSupervisionTick).count()};
    const int signal = sigtimedwait(&signals, nullptr, &pause);
    if (signal == SIGINT || signal == SIGTERM || signal == SIGHUP || signal == SIGQUIT) return signal;
    if (lost.stop_requested()) return 0;
  }
}

int interruptible(const sigset_t& signals, const std::function<void(std::stop_token)>& wait) {
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
  const auto stop_watching = [&] {
    waiting = false;
    watcher.join();
  };
  try {
    wait(cancel.get_token());
  } catch (const Error& error) {
    stop_watching();
    if (error.code() == errc::cancelled && interrupted_by != 0) return interrupted_by;
    throw;
  } catch (...) {
    stop_watching();
    throw;
  }
  stop_watching();
  return 0;
}

pid_t spawn(std::vector<std::string> command, const std::vector<std::string>& variables) {
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attributes, &none);
  sigset_t defaults = handled_signals();
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  // A group of its own, so that stopping it stops what it started too.
  posix_spawnattr_setpgroup(&attributes, 0);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  auto environment = command_environment(variables);
  auto argv = pointers(command);
  auto envp = pointers(environment);
  pid_t pid = 0;
  const int error = posix_spawnp(&pid, argv[0], nullptr, &attributes, argv.data(), envp.data());
  posix_spawnattr_destroy(&attributes);
  return error == 0 ? pid : -error;
}

int supervise(pid_t child, const std::stop_token& lost_token, const std::string& what,
              std::chrono::milliseconds kill_after, const sigset_t& signals, int lost_status) {
  // The loss may come on any thread: it wakes the loop below with SIGUSR1.
  std::stop_callback on_loss(lost_token, [] { kill(getpid(), SIGUSR1); });
  bool lost = false;
  auto kill_at = Steady::time_point::max();  // when SIGTERM turns into SIGKILL
  for (;;) {
    const timespec pause{0, std::chrono::nanoseconds(kSupervisionTick).count()};
    const int signal = sigtimedwait(&signals, nullptr, &pause);
    int status = 0;
    if (waitpid(child, &status, WNOHANG) == child) {
      if (lost) return lost_status;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (is_forwarded(signal)) kill(-child, signal);
    if (!lost && lost_token.stop_requested()) {
      lost = true;
      std::cerr << "etcdlock: " << what << " was lost; stopping the command\n";
      kill(-child, SIGTERM);
      kill_at = Steady::now() + kill_after;
    }
    if (Steady::now() >= kill_at) {
      std::cerr << "etcdlock: the command did not stop within " << kill_after.count() << " ms; killing it\n";
      kill(-child, SIGKILL);
      kill_at = Steady::time_point::max();
    }
  }
}

}  // namespace etcdlock::cli
