// The etcdlock command keeps etcdctl's conventions (its variables, --password,
// --version, Go's durations) and says things once: each line of output and
// help read by a person, against a real etcd.
#include <gtest/gtest.h>

#include <sstream>

#include "child_process.h"
#include "lock_fixture.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;

class CliConventions : public LockTest {
 protected:
  // Runs `etcdlock ARGS` through sh with this test's endpoints and prefix,
  // after `environment` (assignments such as "ETCDCTL_USER=x"); returns the
  // exit status and every line of stdout and stderr together.
  std::pair<int, std::vector<std::string>> shell(const std::string& environment, const std::string& args) {
    const std::string command = environment + " '" + built_program("../tools/cli/etcdlock") +
                                "' --endpoints=" + etcd_.endpoints_csv() + " --prefix=" + prefix_ + " " + args +
                                " 2>&1";
    ChildProcess process({"sh", "-c", command});
    std::vector<std::string> lines;
    while (auto line = process.read_line(30s)) lines.push_back(*line);
    return {process.wait(), lines};
  }
  static std::string joined(const std::vector<std::string>& lines) {
    std::string text;
    for (const auto& line : lines) text += line + "\n";
    return text;
  }
};

TEST_F(CliConventions, VersionIsPrinted) {
  const auto [status, lines] = shell("", "--version");
  EXPECT_EQ(status, 0);
  ASSERT_EQ(lines.size(), 1u) << joined(lines);
  EXPECT_EQ(lines[0], std::string("etcdlock ") + kVersion);
}

TEST_F(CliConventions, EtcdctlVariablesAreRead) {
  // A bad value in the variable is refused by name: proof that it is read.
  auto [status, lines] = shell("ETCDCTL_DIAL_TIMEOUT=soon", "list");
  EXPECT_EQ(status, 64);
  EXPECT_NE(joined(lines).find("\"soon\""), std::string::npos) << joined(lines);
  std::tie(status, lines) = shell("ETCDCTL_COMMAND_TIMEOUT=later", "list");
  EXPECT_EQ(status, 64);
  EXPECT_NE(joined(lines).find("\"later\""), std::string::npos) << joined(lines);
  std::tie(status, lines) = shell("ETCDCTL_CACERT=/no/such/ca.pem", "list");
  EXPECT_EQ(status, 64);
  EXPECT_NE(joined(lines).find("/no/such/ca.pem"), std::string::npos) << joined(lines);
  // A flag wins over its variable.
  std::tie(status, lines) = shell("ETCDCTL_DIAL_TIMEOUT=soon", "--dial-timeout 2s list");
  EXPECT_EQ(status, 0) << joined(lines);
  std::tie(status, lines) = shell("ETCDCTL_DIAL_TIMEOUT=1m30s ETCDCTL_COMMAND_TIMEOUT=1m2.5s", "list");
  EXPECT_EQ(status, 0) << joined(lines);
}

TEST_F(CliConventions, PasswordComesFromOnePlace) {
  auto [status, lines] = shell("", "--user root:secret --password other list");
  EXPECT_EQ(status, 64);
  EXPECT_NE(joined(lines).find("--password"), std::string::npos) << joined(lines);
  std::tie(status, lines) = shell("", "--password secret list");
  EXPECT_EQ(status, 64);
  EXPECT_NE(joined(lines).find("--user"), std::string::npos) << joined(lines);
}

TEST_F(CliConventions, GoStyleDurations) {
  auto [status, lines] = shell("", "run job --timeout 1m30s --ttl 1m -- true");
  EXPECT_EQ(status, 0) << joined(lines);
  std::tie(status, lines) = shell("", "run job --timeout 1m30 -- true");
  EXPECT_EQ(status, 64) << "Go wants a unit on every part";
  EXPECT_NE(joined(lines).find("\"1m30\""), std::string::npos) << joined(lines);
}

TEST_F(CliConventions, TheShortestTtlRunsAndAShorterOneIsNamed) {
  for (const char* command : {"run job --ttl 1s -- true", "elect e p --ttl 1s -- true"}) {
    const auto [status, lines] = shell("", command);
    EXPECT_EQ(status, 0) << command << ":\n" << joined(lines);
  }
  for (const char* command : {"run job --ttl 500ms -- true", "elect e p --ttl 0 -- true"}) {
    const auto [status, lines] = shell("", command);
    EXPECT_EQ(status, 64) << command;
    EXPECT_NE(joined(lines).find("--ttl"), std::string::npos) << joined(lines);
    EXPECT_EQ(joined(lines).find("--kill-after"), std::string::npos) << "never passed: " << joined(lines);
  }
}

TEST_F(CliConventions, RunWithPermitsSetsTheKeyVariables) {
  const auto [status, lines] =
      shell("",
            "run -n 2 pool -- sh -c 'echo \"$ETCDLOCK_KEY $ETCD_LOCK_KEY $ETCDLOCK_FENCING_TOKEN $ETCD_LOCK_REV "
            "$ETCDLOCK_PERMITS\"'");
  EXPECT_EQ(status, 0);
  ASSERT_EQ(lines.size(), 1u) << joined(lines);
  std::istringstream fields(lines[0]);
  std::string key, etcd_key, token, etcd_rev, permits;
  fields >> key >> etcd_key >> token >> etcd_rev >> permits;
  EXPECT_TRUE(key.starts_with(prefix_ + "/pool/")) << lines[0];
  EXPECT_EQ(etcd_key, key);
  EXPECT_EQ(etcd_rev, token);
  EXPECT_EQ(permits, "2");
}

TEST_F(CliConventions, UnlockForceSaysOneLine) {
  auto holder = manager();
  auto lock = holder->get_lock("job");
  lock->lock();
  auto [status, lines] = shell("", "unlock --force job");
  EXPECT_EQ(status, 0);
  ASSERT_EQ(lines.size(), 1u) << joined(lines);
  EXPECT_TRUE(lines[0].starts_with("force-unlocked \"job\"")) << lines[0];
  std::tie(status, lines) = shell("", "unlock job");
  EXPECT_EQ(status, 64);
  EXPECT_NE(joined(lines).find("--force"), std::string::npos) << joined(lines);
}

TEST_F(CliConventions, HelpReadsWell) {
  auto [status, lines] = shell("", "--help");
  EXPECT_EQ(status, 0);
  EXPECT_NE(joined(lines).find("Exit status:"), std::string::npos) << "listed once, in the main help";
  for (const char* subcommand : {"run", "elect", "list", "info", "status", "watch", "unlock", "revoke", "leader"}) {
    std::tie(status, lines) = shell("", std::string(subcommand) + " --help");
    EXPECT_EQ(status, 0) << subcommand;
    const auto help = joined(lines);
    EXPECT_EQ(help.find("Exit status:"), std::string::npos) << subcommand << " repeats the exit statuses";
    EXPECT_EQ(help.find("TEXT:DURATION"), std::string::npos) << subcommand << ":\n" << help;
    EXPECT_EQ(help.find("--force REQUIRED"), std::string::npos) << subcommand << ":\n" << help;
  }
}

}  // namespace
}  // namespace etcdlock::testing
