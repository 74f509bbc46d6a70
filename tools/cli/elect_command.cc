// `etcdlock elect` and `etcdlock leader`: leader election from the shell, in
// the elections of `etcdctl elect` and Go's concurrency.Election.
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "duration.h"
#include "error_exit.h"
#include "etcdlock/etcdlock.h"
#include "exit_codes.h"
#include "loss_timing.h"
#include "output.h"
#include "run_command.h"
#include "subcommand.h"
#include "supervision.h"

namespace etcdlock::cli {
namespace {

struct ElectFlags {
  std::string name, proposal;
  std::vector<std::string> command;
  std::string ttl = "30s", kill_after;
  bool listen = false, json = false;
};

nlohmann::json leader_json(const std::optional<LeaderInfo>& leader) {
  if (!leader) return nullptr;
  return {{"key", leader->key},
          {"value", leader->value},
          {"lease_id", lease_hex(leader->lease_id)},
          {"fencing_token", leader->revision}};
}

// As etcdctl elect prints a leader: its key, then its proposal.
void print_leader(const std::optional<LeaderInfo>& leader, bool json) {
  if (json) {
    std::cout << json_text({{"leader", leader_json(leader)}}) << std::endl;
  } else if (leader) {
    std::cout << leader->key << "\n" << leader->value << std::endl;
  } else {
    std::cout << "(no leader)" << std::endl;
  }
}

int listen(const ManagerOptions& options, const ElectFlags& flags, const sigset_t& signals) {
  LockManager manager(options);
  std::mutex printing;
  auto observation = manager.get_election(flags.name)->observe([&](const std::optional<LeaderInfo>& leader) {
    std::lock_guard lock(printing);
    print_leader(leader, flags.json);
  });
  wait_for_signal(signals);
  return kExitOk;
}

int lead(const ManagerOptions& options, const ElectFlags& flags, std::chrono::milliseconds kill_after,
         const sigset_t& signals) {
  LockManager manager(options);
  auto election = manager.get_election(flags.name);
  const int interrupted_by =
      interruptible(signals, [&](std::stop_token cancel) { election->campaign(flags.proposal, cancel); });
  if (interrupted_by != 0) return 128 + interrupted_by;
  const auto leader = election->leader();
  const std::string what = "leadership of \"" + flags.name + "\"";
  int status = kExitOk;
  if (flags.command.empty()) {
    print_leader(leader, flags.json);
    if (wait_for_signal(signals, election->lost_token()) == 0) {
      std::cerr << "etcdlock: " << what << " was lost\n";
      status = kExitLockLost;
    }
  } else {
    const auto token = std::to_string(election->fencing_token());
    Child child;
    status = spawn(flags.command,
                   {"ETCDLOCK_NAME=" + flags.name, "ETCDLOCK_KEY=" + (leader ? leader->key : ""),
                    "ETCDLOCK_FENCING_TOKEN=" + token, "ETCDLOCK_PROPOSAL=" + flags.proposal},
                   child);
    if (status == kExitOk) {
      const auto lost = election->lost_token();
      const auto still_held = [&] {
        return !lost.stop_requested() && manager.time_left() > std::chrono::milliseconds(0);
      };
      status = supervise(child, signals, {lost, still_held, what, kill_after, kExitLockLost});
    }
  }
  // Only once the command and all it started are gone.
  election->resign();
  return status;
}

int run_elect(ManagerOptions options, const ElectFlags& flags) {
  if (flags.listen != flags.proposal.empty() || (flags.listen && !flags.command.empty())) {
    std::cerr << "etcdlock: elect needs NAME PROPOSAL [-- CMD...], or --listen NAME\n";
    return kExitUsage;
  }
  LossTiming timing;
  try {
    timing = parse_loss_timing(flags.ttl, flags.kill_after);
  } catch (const std::invalid_argument& error) {
    std::cerr << "etcdlock: " << error.what() << "\n";
    return kExitUsage;
  }
  options.ttl = timing.ttl;
  const auto kill_after = timing.kill_after;
  const sigset_t signals = block_handled_signals();
  try {
    return flags.listen ? listen(options, flags, signals) : lead(options, flags, kill_after, signals);
  } catch (const Error& error) {
    std::cerr << "etcdlock: " << error.what() << "\n";
    return exit_status_for(error);
  }
}

int show_leader(const ManagerOptions& options, const std::string& name, bool json) {
  try {
    LockManager manager(options);
    print_leader(manager.get_election(name)->leader(), json);
    return kExitOk;
  } catch (const Error& error) {
    std::cerr << "etcdlock: " << error.what() << "\n";
    return exit_status_for(error);
  }
}

}  // namespace

std::vector<Subcommand> add_election_commands(CLI::App& app) {
  auto flags = std::make_shared<ElectFlags>();
  auto* elect =
      app.add_subcommand("elect", "campaign as NAME's leader with PROPOSAL; with a command, run it only while leader");
  elect->add_option("name", flags->name, "the election's name")->required();
  elect->add_option("proposal", flags->proposal, "this candidate's proposal (not with --listen)");
  elect->add_option("command", flags->command, "a command to run while leader, after --");
  elect->add_flag("-l,--listen", flags->listen, "print each change of leader instead of campaigning");
  elect->add_flag("--json", flags->json, "print JSON lines");
  elect->add_option("--ttl", flags->ttl, "the lease TTL: how long a crashed leader stays leader")
      ->check(kDuration)
      ->capture_default_str();
  elect
      ->add_option("--kill-after", flags->kill_after,
                   "after a lost leadership, SIGKILL the command this long after SIGTERM (as run)")
      ->check(kDuration);
  elect->footer(
      "Prints the leader's key and proposal once elected, as etcdctl elect does, and holds the\n"
      "leadership until SIGINT or SIGTERM, then resigns. With a command, runs it while leader with\n"
      "ETCDLOCK_NAME, ETCDLOCK_KEY, ETCDLOCK_FENCING_TOKEN and ETCDLOCK_PROPOSAL, stops it if the\n"
      "leadership is lost (exit 76), and resigns when it exits. --listen prints each leader (key and\n"
      "proposal) and \"(no leader)\" when there is none.");
  auto* leader = app.add_subcommand("leader", "print the current leader of an election");
  leader->add_option("name", flags->name, "the election's name")->required();
  leader->add_flag("--json", flags->json, "print JSON");
  return {
      {elect, [flags](const ManagerOptions& options) { return run_elect(options, *flags); }},
      {leader, [flags](const ManagerOptions& options) { return show_leader(options, flags->name, flags->json); }},
  };
}

}  // namespace etcdlock::cli
