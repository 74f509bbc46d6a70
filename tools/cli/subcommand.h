// How the etcdlock command is put together: each subcommand registers its
// flags with CLI11 and returns what runs it once the flags are parsed.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "etcdlock/options.h"

namespace etcdlock::cli {

struct Subcommand {
  CLI::App* app = nullptr;
  // Runs the subcommand with the connection the global flags describe;
  // returns the process's exit status (exit_codes.h).
  std::function<int(const ManagerOptions&)> run;
};

// The connection flags, as etcdctl names them.
struct ConnectionFlags {
  std::string endpoints;
  std::string prefix = "/etcdlock";
  std::string dial_timeout = "5s";
  std::string command_timeout = "5s";
  std::string cacert, cert, key, user, password;
};

void add_connection_flags(CLI::App& app, ConnectionFlags& flags);
// Throws std::invalid_argument for a bad duration, or a password given twice.
ManagerOptions manager_options(const ConnectionFlags& flags);

// A CLI11 validator for durations, naming the bad value.
extern const CLI::Validator kDuration;

Subcommand add_run(CLI::App& app);
std::vector<Subcommand> add_admin_commands(CLI::App& app);
std::vector<Subcommand> add_election_commands(CLI::App& app);
std::vector<Subcommand> add_status_commands(CLI::App& app);

}  // namespace etcdlock::cli
