// `etcdlock status` and `etcdlock watch`: what the locks under a prefix are
// doing, now (every holder and waiter) and as it happens (each change).
#include <iostream>
#include <mutex>

#include "error_exit.h"
#include "etcdlock/etcdlock.h"
#include "exit_codes.h"
#include "output.h"
#include "subcommand.h"
#include "supervision.h"

namespace etcdlock::cli {
namespace {

struct StatusFlags {
  std::string name_prefix;
  bool json = false;
};

int show_status(const ManagerOptions& options, const StatusFlags& flags) {
  try {
    LockManager manager(options);
    const auto rows = manager.list(flags.name_prefix);
    // A second read: a deadlock lasts until a member gives up, so one seen
    // there was there with the rows, unless it was just breaking.
    const auto deadlocks = rows.empty() ? std::vector<Deadlock>{} : manager.deadlocks(flags.name_prefix);
    if (flags.json) {
      print_status_json(std::cout, rows, deadlocks);
    } else if (rows.empty()) {
      std::cout << "no locks held or waited for under " << options.prefix << "/" << flags.name_prefix << "\n";
    } else {
      print_status(std::cout, rows, std::chrono::system_clock::now());
      print_deadlocks(std::cout, deadlocks);
    }
    return kExitOk;
  } catch (const Error& error) {
    std::cerr << "etcdlock: " << error.what() << "\n";
    return exit_status_for(error);
  }
}

int watch_locks(const ManagerOptions& options, const StatusFlags& flags) {
  const sigset_t signals = block_handled_signals();
  try {
    LockManager manager(options);
    std::mutex printing;
    // The first line before any event: the listener waits for the mutex.
    std::unique_lock header(printing);
    auto watch = manager.watch(flags.name_prefix, [&](const LockEvent& event) {
      std::lock_guard lock(printing);
      print_event(std::cout, event, flags.json, std::chrono::system_clock::now());
      std::cout.flush();  // a pipe reader sees each event as it happens
    });
    const auto watched = options.prefix + "/" + flags.name_prefix;
    if (flags.json) {
      std::cout << json_text({{"watching", watched}}) << std::endl;
    } else {
      std::cout << "watching " << printable(watched) << "* (interrupt to stop)" << std::endl;
    }
    header.unlock();
    wait_for_signal(signals);
    return kExitOk;
  } catch (const Error& error) {
    std::cerr << "etcdlock: " << error.what() << "\n";
    return exit_status_for(error);
  }
}

}  // namespace

std::vector<Subcommand> add_status_commands(CLI::App& app) {
  auto flags = std::make_shared<StatusFlags>();
  auto* status =
      app.add_subcommand("status", "show every holder and waiter of the locks whose names start with PREFIX");
  status->add_option("name_prefix", flags->name_prefix, "a prefix of lock names");
  status->add_flag("--json", flags->json, "print JSON for scripts: the rows (as list --json) and the deadlocks");
  status->footer(
      "One line per queue entry: each lock's holders (several for a semaphore or readers), then\n"
      "its waiters in the order they are admitted. QUEUED is when the entry joined the queue, by\n"
      "its owner's clock, and FOR how long ago: a waiter has waited that long; a holder has held\n"
      "at most that long (it may have waited first). Entries of etcdctl and Go show owner\n"
      "\"unknown\" and no time. When a multi-lock (etcdlock run A B -- CMD) holds or waits, a WITH\n"
      "column names the other locks of each entry that has the same lease and fencing token: one\n"
      "enqueue put them all there, and they are held together. Then one \"deadlock:\" line per cycle\n"
      "of owners (leases) that wait for one another and that nothing else can break: each member,\n"
      "the name it holds and the name it waits for. A manager's threads share its lease, so a cycle\n"
      "is one between managers: a deadlock while each keeps its holds as it waits. --json prints\n"
      "{\"locks\": [as list --json], \"deadlocks\": [{\"members\": [{lease_id, owner, holds, holding,\n"
      "waits_for}]}]}.");
  auto* watch = app.add_subcommand("watch", "print each change of the locks whose names start with PREFIX");
  watch->add_option("name_prefix", flags->name_prefix, "a prefix of lock names");
  watch->add_flag("--json", flags->json, "print JSON lines");
  watch->footer(
      "Prints a first line once the watch is in place (\"watching ...\", or {\"watching\": ...}),\n"
      "then one line per change until interrupted: queued (an entry waits), acquired,\n"
      "released (a holder went: an unlock, a force unlock, or \"(lease ended)\": its owner\n"
      "closed, crashed or lost its lease) and left (a waiter gave up).");
  return {
      {status, [flags](const ManagerOptions& options) { return show_status(options, *flags); }},
      {watch, [flags](const ManagerOptions& options) { return watch_locks(options, *flags); }},
  };
}

}  // namespace etcdlock::cli
