#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "duration.h"
#include "subcommand.h"

namespace etcdlock::cli {
namespace {

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

}  // namespace

const CLI::Validator kDuration(
    [](std::string& text) {
      try {
        parse_duration(text);
        return std::string();
      } catch (const std::invalid_argument& error) {
        return std::string(error.what());
      }
    },
    "",  // no ":DURATION" after the type: main() names the type DURATION
    "duration");

// Connection flags take etcdctl's variables where the flag matches one of
// etcdctl's, so that a shell set up for etcdctl serves etcdlock as it is. A
// flag on the command line wins over its variable.
void add_connection_flags(CLI::App& app, ConnectionFlags& flags) {
  flags.endpoints = default_endpoints();
  app.add_option("--endpoints", flags.endpoints,
                 "comma-separated etcd endpoints (env ETCDLOCK_ENDPOINTS, then ETCDCTL_ENDPOINTS)")
      ->type_name("HOST:PORT,...")
      ->capture_default_str();
  app.add_option("--prefix", flags.prefix, "the namespace of the locks in etcd")
      ->type_name("PATH")
      ->capture_default_str();
  app.add_option("--dial-timeout", flags.dial_timeout, "how long to wait for a connection")
      ->envname("ETCDCTL_DIAL_TIMEOUT")
      ->check(kDuration)
      ->type_name("DURATION")
      ->capture_default_str();
  app.add_option("--command-timeout", flags.command_timeout, "the deadline of one request to etcd")
      ->envname("ETCDCTL_COMMAND_TIMEOUT")
      ->check(kDuration)
      ->type_name("DURATION")
      ->capture_default_str();
  app.add_option("--cacert", flags.cacert, "verify etcd's certificate with this CA; turns TLS on")
      ->envname("ETCDCTL_CACERT")
      ->type_name("PEM-FILE")
      ->check(CLI::Validator(CLI::ExistingFile).description(""));
  app.add_option("--cert", flags.cert, "client certificate, for etcd's --client-cert-auth")
      ->envname("ETCDCTL_CERT")
      ->type_name("PEM-FILE")
      ->check(CLI::Validator(CLI::ExistingFile).description(""));
  app.add_option("--key", flags.key, "the client certificate's key")
      ->envname("ETCDCTL_KEY")
      ->type_name("PEM-FILE")
      ->check(CLI::Validator(CLI::ExistingFile).description(""));
  app.add_option("--user", flags.user, "etcd user, as name:password, or name with --password")
      ->envname("ETCDCTL_USER")
      ->type_name("NAME[:PASSWORD]");
  app.add_option("--password", flags.password,
                 "etcd password, when --user has none (env ETCDCTL_PASSWORD, then ETCDLOCK_PASSWORD)")
      ->type_name("PASSWORD");
}

ManagerOptions manager_options(const ConnectionFlags& flags) {
  ManagerOptions options;
  options.endpoints = split_endpoints(flags.endpoints);
  options.prefix = flags.prefix;
  options.dial_timeout = parse_duration(flags.dial_timeout);
  options.command_timeout = parse_duration(flags.command_timeout);
  options.log_sink = stderr_log_sink(LogLevel::warning);
  const bool https = std::any_of(options.endpoints.begin(), options.endpoints.end(),
                                 [](const std::string& endpoint) { return endpoint.starts_with("https://"); });
  if (!flags.cacert.empty() || !flags.cert.empty() || !flags.key.empty() || https) {
    options.tls = TlsOptions{flags.cacert, flags.cert, flags.key};
  }
  if (!flags.user.empty()) {
    const auto colon = flags.user.find(':');
    options.username = flags.user.substr(0, colon);
    if (colon != std::string::npos) {
      if (!flags.password.empty()) {
        throw std::invalid_argument("--user \"" + options.username +
                                    ":...\" has a password, and --password gives another: give one of them");
      }
      options.password = flags.user.substr(colon + 1);
    } else if (!flags.password.empty()) {
      options.password = flags.password;
    } else {
      for (const char* variable : {"ETCDCTL_PASSWORD", "ETCDLOCK_PASSWORD"}) {
        if (const char* password = std::getenv(variable); password != nullptr && *password != '\0') {
          options.password = password;
          break;
        }
      }
    }
  } else if (!flags.password.empty()) {
    throw std::invalid_argument("--password needs --user NAME");
  }
  return options;
}

}  // namespace etcdlock::cli
