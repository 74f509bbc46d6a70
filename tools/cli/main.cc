// etcdlock: the command-line tool. Runs a command under a distributed lock,
// and inspects and administers the locks under a prefix.
#include <CLI/CLI.hpp>
#include <iostream>
#include <stdexcept>
#include <string_view>

#include "command_shim.h"
#include "etcdlock/version.h"
#include "exit_codes.h"
#include "run_command.h"
#include "subcommand.h"

namespace {

constexpr const char* kExitStatusHelp = R"(Exit status:
  0        success (run: the command exited 0)
  1-125    run: the command's own exit status
  64       usage error: bad flag, name, prefix or duration, missing command
  69       etcd could not be reached, or a request failed
  73       run --try: another owner holds the lock
  74       unlock --force, revoke: no such holder or lease
  75       run --timeout: the lock was not acquired in time
  76       run, elect: the lock or leadership was lost; the command was stopped
  77       etcd denied the request
  126/127  run: the command could not be run / was not found
  128+N    run: the command died of signal N, or etcdlock was interrupted by it while waiting)";

// Labels that read well: an option checked as a duration says DURATION, not
// CLI11's "TEXT:DURATION".
void name_duration_types(CLI::App& app) {
  for (CLI::Option* option : app.get_options()) {
    try {
      (void)option->get_validator("duration");
      option->type_name("DURATION");
    } catch (const CLI::OptionNotFound&) {
    }
  }
  for (CLI::App* subcommand : app.get_subcommands({})) name_duration_types(*subcommand);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace etcdlock::cli;
  // The watchdog that `run` and `elect` start their command through.
  if (argc > 1 && std::string_view(argv[1]) == kCommandShimFlag) return run_command_shim(argc, argv);
  // Named, so that help and the man page say "etcdlock", not the path it was run by.
  CLI::App app{"etcdlock: distributed locks and elections on etcd v3, compatible with etcdctl lock and elect",
               "etcdlock"};
  app.set_version_flag("--version", std::string("etcdlock ") + etcdlock::kVersion);
  app.require_subcommand(1);
  app.fallthrough();  // connection flags may come before or after the subcommand
  ConnectionFlags connection;
  add_connection_flags(app, connection);
  std::vector<Subcommand> subcommands{add_run(app)};
  for (auto& admin : add_admin_commands(app)) subcommands.push_back(std::move(admin));
  for (auto& election : add_election_commands(app)) subcommands.push_back(std::move(election));
  for (auto& status : add_status_commands(app)) subcommands.push_back(std::move(status));
  // Set after the subcommands, which would otherwise inherit it: the exit
  // statuses are listed once, in `etcdlock --help`.
  app.footer(kExitStatusHelp);
  name_duration_types(app);

  note_arguments(argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& help) {
    return app.exit(help);
  } catch (const CLI::CallForAllHelp& help) {
    return app.exit(help);
  } catch (const CLI::CallForVersion& version) {
    return app.exit(version);
  } catch (const CLI::ParseError& error) {
    std::cerr << "etcdlock: " << error.what() << "\nRun with --help for usage.\n";
    return kExitUsage;
  }
  for (const auto& subcommand : subcommands) {
    if (!*subcommand.app) continue;
    etcdlock::ManagerOptions options;
    try {
      options = manager_options(connection);
    } catch (const std::invalid_argument& error) {
      std::cerr << "etcdlock: " << error.what() << "\n";
      return kExitUsage;
    }
    return subcommand.run(options);
  }
  return kExitUsage;
}
