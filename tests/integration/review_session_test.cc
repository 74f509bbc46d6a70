// Review of dbfa1e8 (Session: each renewal is a keepalive stream of its own),
// against real etcd. Each test says whether it shows a defect (FAILS on
// dbfa1e8) or a check that held (passes).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <stop_token>
#include <thread>

#include "etcd/client.h"
#include "etcd_cluster.h"
#include "etcdlock/etcdlock.h"
#include "lock_fixture.h"
#include "tcp_proxy.h"
#include "wire_helpers.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

long long ms_between(Steady::time_point from, Steady::time_point to) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
}

// When a hold's token first fired.
struct Watcher {
  explicit Watcher(std::stop_token token)
      : callback(token, [this] {
          at_ns.store(Steady::now().time_since_epoch().count());
          fired.store(true);
        }) {}
  Steady::time_point at() const { return Steady::time_point(Steady::duration(at_ns.load())); }
  std::atomic<bool> fired{false};
  std::atomic<Steady::duration::rep> at_ns{0};
  std::stop_callback<std::function<void()>> callback;
};

// etcd reads its flags from ETCD_* variables too: the members this fixture
// starts hash passwords at a high bcrypt cost (each Authenticate costs
// etcd seconds, as on a small or busy machine with a hardened cost), and
// forget a simple token after a second of disuse (--auth-token-ttl).
struct SlowAuthEnvironment {
  SlowAuthEnvironment() {
    setenv("ETCD_BCRYPT_COST", "15", 1);
    setenv("ETCD_AUTH_TOKEN_TTL", "1", 1);
  }
};

class SlowAuth : public ::testing::Test, private SlowAuthEnvironment {
 protected:
  SlowAuth() {
    unsetenv("ETCD_BCRYPT_COST");
    unsetenv("ETCD_AUTH_TOKEN_TTL");
    for (const std::string& command : std::vector<std::string>{
             "user add root --new-user-password=rootpw",
             "user grant-role root root",
             "user add alice --new-user-password=alicepw",
             "role add locker",
             "role grant-permission locker readwrite " + prefix_ + "/ --prefix=true",
             "user grant-role alice locker",
             "auth enable",
         }) {
      std::string output;
      EXPECT_EQ(run_command("etcdctl --endpoints=" + etcd_.endpoints_csv() + " " + command + " 2>&1", &output), 0)
          << command << ": " << output;
    }
  }

  ManagerOptions as_alice(std::chrono::seconds ttl) const {
    ManagerOptions options;
    options.endpoints = etcd_.endpoints();
    options.prefix = prefix_;
    options.ttl = ttl;
    options.username = "alice";
    options.password = "alicepw";
    options.log_sink = stderr_log_sink(LogLevel::info);
    return options;
  }

  // The lease's TTL in etcd, asked without a user (etcd 3.4 answers
  // LeaseTimeToLive without one); -1 once etcd expired it.
  std::int64_t etcd_ttl(std::int64_t lease) {
    return unauthenticated_.lease_time_to_live(lease, Steady::now() + 2s).ttl();
  }

  EtcdCluster etcd_{1};
  detail::etcd::Client unauthenticated_{etcd_.endpoints(), std::chrono::seconds(5)};
  const std::string prefix_ = test_prefix();
};

// FINDING (fails on dbfa1e8): a late loss signal. The renew thread calls
// Client::open_keep_alive, whose authorize() takes the client's token mutex
// and, when the token is empty, authenticates under it with its own context
// and a whole command timeout: neither the renewal's deadline (bounded by the
// local deadline) nor TryCancel of context_ reaches it. When etcd has
// forgotten the token (--auth-token-ttl; also a password change or an etcd
// restart), the next unary call of the process clears it and authenticates
// while holding that mutex; the renewal due meanwhile blocks behind it, no
// renewal reaches etcd, and the deadline check of keep_alive() runs only once
// renew_once() returns. etcd expires the lease one TTL after the last renewal
// while the hold still stands: the loss is signalled after it.
TEST_F(SlowAuth, LossIsSignalledBeforeEtcdExpiresTheLeaseWhileTheClientReauthenticates) {
  const auto started = Steady::now();
  LockManager holder(as_alice(2s));
  std::cout << "one Authenticate (manager start) took " << ms_between(started, Steady::now()) << " ms\n";
  auto holding = holder.get_lock("x");
  holding->lock();
  const auto lease = holder.lease_id();
  Watcher loss(holding->lost_token());
  // Keepalives do not use the token: etcd forgets it after a second.
  std::this_thread::sleep_for(3s);
  ASSERT_TRUE(holding->held()) << "the hold ended before the scenario started";
  ASSERT_GT(etcd_ttl(lease), 0);

  // The holder's next guarded write finds its token rejected and authenticates.
  const auto write_at = Steady::now();
  std::thread writer([&] {
    try {
      holding->guarded_put(prefix_ + "/data", "v");
    } catch (const std::exception& e) {
      std::cout << "guarded_put: " << e.what() << "\n";
    }
  });
  Steady::time_point expired_at{};
  while (Steady::now() - write_at < 20s) {
    if (etcd_ttl(lease) <= 0) {
      expired_at = Steady::now();
      break;
    }
    if (loss.fired) break;
    std::this_thread::sleep_for(10ms);
  }
  writer.join();
  ASSERT_TRUE(eventually([&] { return loss.fired.load(); }, 20s)) << "the hold never ended";
  std::cout << "write at 0 ms; etcd expired the lease at "
            << (expired_at == Steady::time_point{} ? -1 : ms_between(write_at, expired_at))
            << " ms; the hold's token fired at " << ms_between(write_at, loss.at()) << " ms\n";
  EXPECT_EQ(expired_at, Steady::time_point{}) << "etcd expired the lease " << ms_between(expired_at, loss.at())
                                              << " ms before the hold's loss was signalled";
}

}  // namespace
}  // namespace etcdlock::testing
