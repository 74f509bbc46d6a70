// etcdlock: the command-line tool. Runs a command under a distributed lock,
// and inspects and administers the locks under a prefix.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "admin_commands.h"
#include "duration.h"
#include "etcdlock/etcdlock.h"
#include "exit_codes.h"
#include "run_command.h"

namespace {

using namespace etcdlock::cli;

constexpr const char* kExitStatusHelp = R"(Exit status:
  0        success (run: the command exited 0)
  1-125    run: the command's own exit status
  64       usage error: bad flag, name, prefix or duration, missing command
  69       etcd could not be reached, or a request failed
  73       run --try: another owner holds the lock
  74       unlock --force, revoke: no such holder or lease
  75       run --timeout: the lock was not acquired in time
  76       run: the lock was lost; the command was stopped
  77       etcd denied the request
  126/127  run: the command could not be run / was not found
  128+N    run: the command died of signal N, or etcdlock was interrupted by it while waiting)";

std::vector<std::string> split_endpoints(const std::string& list) {
  std::vector<std::string> endpoints;
  std::stringstream stream(list);
  for (std::string endpoint; std::getline(stream, endpoint, ',');) {
    if (!endpoint.empty()) endpoints.push_back(endpoint);
  }
  return endpoints;
}

std::string default_endpoints() {
  for (const char* variable : {"ETCDLOCK_ENDPOINTS", "ETCDCTL_ENDPOINTS"}) {
    if (const char* value = std::getenv(variable); value != nullptr && *value != '\0') return value;
  }
  return "127.0.0.1:2379";
}

// A CLI11 validator for durations, naming the bad value.
const CLI::Validator kDuration(
    [](std::string& text) {
      try {
        parse_duration(text);
        return std::string();
      } catch (const std::invalid_argument& error) {
        return std::string(error.what());
      }
    },
    "DURATION");

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"etcdlock: distributed locks on etcd v3, compatible with etcdctl lock and Go's concurrency.Mutex"};
  app.footer(kExitStatusHelp);
  app.require_subcommand(1);
  app.fallthrough();  // connection flags may come before or after the subcommand

  std::string endpoints = default_endpoints();
  std::string prefix = "/etcdlock";
  std::string dial_timeout = "5s";
  std::string command_timeout = "5s";
  app.add_option("--endpoints", endpoints,
                 "comma-separated etcd endpoints (env ETCDLOCK_ENDPOINTS, then ETCDCTL_ENDPOINTS)")
      ->capture_default_str();
  app.add_option("--prefix", prefix, "the namespace of the locks in etcd")->capture_default_str();
  app.add_option("--dial-timeout", dial_timeout, "how long to wait for a connection")->check(kDuration)->capture_default_str();
  app.add_option("--command-timeout", command_timeout, "the deadline of one request to etcd")
      ->check(kDuration)
      ->capture_default_str();
  std::string cacert, cert, key, user;
  app.add_option("--cacert", cacert, "verify etcd's certificate with this CA (PEM file); turns TLS on")
      ->check(CLI::ExistingFile);
  app.add_option("--cert", cert, "client certificate (PEM file), for etcd's --client-cert-auth")->check(CLI::ExistingFile);
  app.add_option("--key", key, "the client certificate's key (PEM file)")->check(CLI::ExistingFile);
  app.add_option("--user", user, "etcd user, as name:password, or name with the password in ETCDLOCK_PASSWORD");

  RunOptions run;
  std::string ttl = "30s", timeout, kill_after = "10s";
  auto* run_command = app.add_subcommand("run", "hold a lock while a command runs: etcdlock run NAME -- CMD [ARGS...]");
  run_command->add_option("name", run.name, "the lock's name")->required();
  run_command->add_option("command", run.command, "the command and its arguments, after --")->required();
  run_command->add_option("--ttl", ttl, "the lease TTL: how long the lock outlives a crash of etcdlock")
      ->check(kDuration)
      ->capture_default_str();
  run_command->add_option("--timeout", timeout, "give up (exit 75) if not acquired within this time")->check(kDuration);
  run_command->add_flag("--try", run.try_once, "give up at once (exit 73) if another owner holds the lock");
  run_command->add_option("--kill-after", kill_after, "after a lost lock, SIGKILL the command this long after SIGTERM")
      ->check(kDuration)
      ->capture_default_str();
  run_command->footer(
      "The command gets ETCDLOCK_NAME, ETCDLOCK_KEY and ETCDLOCK_FENCING_TOKEN, and ETCD_LOCK_KEY and\n"
      "ETCD_LOCK_REV as etcdctl lock sets them (ETCD_LOCK_REV is the fencing token). SIGINT, SIGTERM,\n"
      "SIGHUP and SIGQUIT are forwarded to its process group; the lock is released when it exits.");

  std::string name_prefix;
  bool json = false;
  auto* list_command = app.add_subcommand("list", "list the held locks whose names start with PREFIX");
  list_command->add_option("name_prefix", name_prefix, "a prefix of lock names");
  list_command->add_flag("--json", json, "print JSON for scripts");

  std::string name;
  auto* info_command = app.add_subcommand("info", "show the holder of a lock and its waiters");
  info_command->add_option("name", name, "the lock's name")->required();
  info_command->add_flag("--json", json, "print JSON for scripts");

  bool force = false;
  auto* unlock_command = app.add_subcommand("unlock", "remove the holder of a lock, whoever it is (admin)");
  unlock_command->add_option("name", name, "the lock's name")->required();
  unlock_command->add_flag("--force", force, "required: confirms removing another owner's hold")->required();

  std::string lease;
  auto* revoke_command = app.add_subcommand("revoke", "revoke a lease, ending every hold of its owner (admin)");
  revoke_command->add_option("lease_id", lease, "the lease id in hex, as etcdctl and `info` print it")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& help) {
    return app.exit(help);
  } catch (const CLI::CallForAllHelp& help) {
    return app.exit(help);
  } catch (const CLI::ParseError& error) {
    std::cerr << "etcdlock: " << error.what() << "\nRun with --help for usage.\n";
    return kExitUsage;
  }

  etcdlock::ManagerOptions options;
  options.endpoints = split_endpoints(endpoints);
  options.prefix = prefix;
  options.dial_timeout = parse_duration(dial_timeout);
  options.command_timeout = parse_duration(command_timeout);
  options.log_sink = etcdlock::stderr_log_sink(etcdlock::LogLevel::warning);
  const bool https = std::any_of(options.endpoints.begin(), options.endpoints.end(),
                                 [](const std::string& endpoint) { return endpoint.starts_with("https://"); });
  if (!cacert.empty() || !cert.empty() || !key.empty() || https) options.tls = etcdlock::TlsOptions{cacert, cert, key};
  if (!user.empty()) {
    const auto colon = user.find(':');
    options.username = user.substr(0, colon);
    if (colon != std::string::npos) {
      options.password = user.substr(colon + 1);
    } else if (const char* password = std::getenv("ETCDLOCK_PASSWORD")) {
      options.password = password;
    }
  }

  if (*run_command) {
    options.ttl = std::chrono::ceil<std::chrono::seconds>(parse_duration(ttl));
    if (!timeout.empty()) run.timeout = parse_duration(timeout);
    run.kill_after = parse_duration(kill_after);
    return run_under_lock(options, run);
  }
  if (*list_command) return list_locks(options, name_prefix, json);
  if (*info_command) return show_lock(options, name, json);
  if (*unlock_command) return force_unlock(options, name);
  return revoke_lease(options, lease);
}
