// What `run` and `elect` share: waiting for a lock or a leadership that a
// signal may interrupt, and running a command only while it is held: started
// in a process group of its own, given the signals etcdlock receives, and
// stopped (SIGTERM, then SIGKILL) when what it needs is lost.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <stop_token>
#include <string>
#include <vector>

namespace etcdlock::cli {

// Signals etcdlock handles itself, synchronously. Call before any thread
// starts: it blocks them, so that every thread inherits the mask.
sigset_t block_handled_signals();

// Waits for SIGINT, SIGTERM, SIGHUP or SIGQUIT (returns it), or for `lost`
// to be requested (returns 0).
int wait_for_signal(const sigset_t& signals, const std::stop_token& lost = {});

// Runs `wait` with a stop token that SIGINT, SIGTERM, SIGHUP or SIGQUIT
// requests. Returns 0 when `wait` returned, or the signal whose request made
// it throw Error(errc::cancelled); other exceptions pass through.
int interruptible(const sigset_t& signals, const std::function<void(std::stop_token)>& wait);

// Starts `command` in a process group of its own with `environment`, after
// etcdlock's own variables are stripped from it. Returns its PID, or -errno.
pid_t spawn(std::vector<std::string> command, const std::vector<std::string>& variables);

// Waits for `child`, forwarding signals to its group; when `lost` is
// requested, sends SIGTERM, then SIGKILL after `kill_after`. Returns the
// child's exit status (128 + N for signal N), or `lost_status` after a loss.
int supervise(pid_t child, const std::stop_token& lost, const std::string& what, std::chrono::milliseconds kill_after,
              const sigset_t& signals, int lost_status);

// How often supervise() wakes without a signal: a --kill-after must leave
// room for it within the lease's loss margin.
inline constexpr std::chrono::milliseconds kSupervisionTick{100};

}  // namespace etcdlock::cli
