// A fixture for lock tests: a fresh etcd, managers on it, and a raw client to
// look at what the locks left in etcd.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "etcd/client.h"
#include "etcd_cluster.h"
#include "etcdlock/etcdlock.h"
#include "wire_helpers.h"

namespace etcdlock::testing {

class LockTest : public ::testing::Test {
 protected:
  explicit LockTest(std::size_t members = 1) : etcd_(members), raw_(etcd_.endpoints(), std::chrono::seconds(5)) {}

  ManagerOptions options() const {
    ManagerOptions options;
    options.endpoints = etcd_.endpoints();
    options.prefix = prefix_;
    options.ttl = std::chrono::seconds(5);
    options.log_sink = stderr_log_sink(LogLevel::warning);
    return options;
  }

  // Options for a manager that reaches etcd through `endpoint`, a proxy that
  // may hold replies back: a call gives up after a second, and the lease (20
  // s) outlives the hold-ups. Only errors are logged.
  ManagerOptions options_through(std::string endpoint) const {
    auto through = options();
    through.endpoints = {std::move(endpoint)};
    through.command_timeout = std::chrono::seconds(1);
    through.dial_timeout = std::chrono::seconds(20);
    through.ttl = std::chrono::seconds(20);
    through.log_sink = stderr_log_sink(LogLevel::error);
    return through;
  }

  std::unique_ptr<LockManager> manager(std::chrono::seconds ttl = std::chrono::seconds(5)) {
    auto with_ttl = options();
    with_ttl.ttl = ttl;
    return std::make_unique<LockManager>(with_ttl);
  }

  // A manager of its own prefix (a test's trial, or a group of managers
  // apart from the others); a lease that outlives the test's stalls, and only
  // errors logged.
  std::unique_ptr<LockManager> manager_on(const std::string& prefix,
                                          std::chrono::seconds ttl = std::chrono::seconds(20)) {
    auto with = options();
    with.prefix = prefix;
    with.ttl = ttl;
    with.log_sink = stderr_log_sink(LogLevel::error);
    return std::make_unique<LockManager>(with);
  }

  // Keys in etcd under the lock named `name` (its holder and waiters).
  std::int64_t entries(const std::string& name) { return count_prefix(raw_, prefix_ + "/" + name + "/"); }
  std::int64_t all_keys() { return count_prefix(raw_, prefix_ + "/"); }

  EtcdCluster etcd_;
  detail::etcd::Client raw_;
  const std::string prefix_ = test_prefix();
};

}  // namespace etcdlock::testing
