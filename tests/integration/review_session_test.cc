// Review of dbfa1e8 (Session: each renewal is a keepalive stream of its own),
// against real etcd. Each test says whether it shows a defect (FAILS on
// dbfa1e8) or a check that held (passes).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <future>
#include <iostream>
#include <memory>
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
// forget a simple token after 3 s of disuse (--auth-token-ttl).
struct SlowAuthEnvironment {
  SlowAuthEnvironment() {
    setenv("ETCD_BCRYPT_COST", "15", 1);
    setenv("ETCD_AUTH_TOKEN_TTL", "3", 1);
  }
};

class SlowAuth : public ::testing::Test, private SlowAuthEnvironment {
 protected:
  SlowAuth() {
    unsetenv("ETCD_BCRYPT_COST");
    unsetenv("ETCD_AUTH_TOKEN_TTL");
    enable_auth_for_alice(etcd_, prefix_);
  }

  ManagerOptions as_alice(std::chrono::seconds ttl) const {
    ManagerOptions options;
    options.endpoints = etcd_.endpoints();
    options.prefix = prefix_;
    options.ttl = ttl;
    options.username = "alice";
    options.password = "alicepw";
    // Each line with the time since the fixture started, to see the order.
    options.log_sink = [inner = stderr_log_sink(LogLevel::info), start = start_](
                           LogLevel level, std::string_view message, std::span<const LogField> fields) {
      if (level >= LogLevel::info) std::cerr << "[" << ms_between(start, Steady::now()) << " ms] ";
      inner(level, message, fields);
    };
    return options;
  }

  // A wire client of alice's, with a command timeout of 10 s or `timeout`.
  std::unique_ptr<detail::etcd::Client> client_as_alice(std::chrono::seconds timeout = 10s) const {
    detail::etcd::Client::Credentials alice;
    alice.username = "alice";
    alice.password = "alicepw";
    return std::make_unique<detail::etcd::Client>(etcd_.endpoints(), timeout, alice);
  }

  // A Txn that reads `key`: any call that needs a token.
  static detail::etcd::pb::TxnRequest read_of(const std::string& key) {
    detail::etcd::pb::TxnRequest read;
    read.add_success()->mutable_request_range()->set_key(key);
    return read;
  }

  // The lease's TTL in etcd, asked without a user (etcd 3.4 answers
  // LeaseTimeToLive without one); -1 once etcd expired it.
  std::int64_t etcd_ttl(std::int64_t lease) {
    return unauthenticated_.lease_time_to_live(lease, Steady::now() + 2s).ttl();
  }

  const Steady::time_point start_ = Steady::now();
  EtcdCluster etcd_{1};
  detail::etcd::Client unauthenticated_{etcd_.endpoints(), std::chrono::seconds(5)};
  const std::string prefix_ = test_prefix();
};

// FINDING (failed on dbfa1e8; passes since 62aacb6, where a keeper thread
// that never blocks watches the local deadline and a renewer makes the
// renewals): a late loss signal. The renew thread calls
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
// Seen (5 of 5 runs): "lease renewals are failing ... deadline_in_ms=-1369",
// i.e. renew_once() returned 1.4 s after the local deadline; etcd expired the
// lease 1.0-1.35 s before the hold's token fired, and the token fired only
// because the hold's watch saw its key deleted by that expiry. The
// re-authentication began about 0.7 s before the guarded write (another call
// of the same client found the token forgotten); the write then queued behind
// it too. Also seen: the manager's first lease is declared lost the moment it
// is granted, as the grant's send time is taken before the 2.5 s
// authentication inside lease_grant (safe, but a false loss and a wasted lease).
// (Those figures read a TTL of 0 as expired; etcd rounds down, so the test
// now bounds the expiry by the last reading of 1 s or more. On dbfa1e8 that
// bound still came before the loss: the first 0 was read at 669 ms, the token
// fired at 1786 ms.)
// Needs only etcd's own --bcrypt-cost 15 (Authenticate takes ~2.5 s here) and
// --auth-token-ttl 3, set through ETCD_* variables.
TEST_F(SlowAuth, LossIsSignalledBeforeEtcdExpiresTheLeaseWhileTheClientReauthenticates) {
  const auto started = Steady::now();
  LockManager holder(as_alice(2s));
  std::cout << "one Authenticate (manager start) took " << ms_between(started, Steady::now()) << " ms\n";
  auto holding = holder.get_lock("x");
  holding->lock();
  const auto lease = holder.lease_id();
  Watcher loss(holding->lost_token());
  // Keepalives do not use the token: etcd forgets it after 3 s of disuse.
  std::this_thread::sleep_for(5s);
  ASSERT_TRUE(holding->held()) << "the hold ended before the scenario started";
  ASSERT_GT(etcd_ttl(lease), 0);

  // The holder's next guarded write finds its token rejected and authenticates.
  const auto write_at = Steady::now();
  std::cout << "[" << ms_between(start_, write_at) << " ms] guarded write starts\n";
  std::thread writer([&] {
    try {
      holding->guarded_put(prefix_ + "/data", "v");
    } catch (const std::exception& e) {
      std::cout << "guarded_put: " << e.what() << "\n";
    }
  });
  // etcd reports a lease's TTL in whole seconds, rounded down: 0 means less
  // than a second is left (or it expired and is not revoked yet), -1 that it
  // is gone. So a reading of 1 or more at t says the lease cannot expire
  // before t + 1 s, whatever renewals follow: the latest such reading bounds
  // the expiry from below, and the loss must come before that bound.
  Steady::time_point cannot_expire_before = write_at;
  bool gone_before_the_loss = false;
  while (Steady::now() - write_at < 20s && !loss.fired) {
    const auto asked = Steady::now();
    const auto ttl = etcd_ttl(lease);
    if (ttl >= 1) cannot_expire_before = asked + 1s;
    if (ttl < 0 && !loss.fired) gone_before_the_loss = true;
    if (ttl < 0) break;
    std::this_thread::sleep_for(10ms);
  }
  writer.join();
  ASSERT_TRUE(eventually([&] { return loss.fired.load(); }, 20s)) << "the hold never ended";
  std::cout << "write at 0 ms; etcd's lease could not expire before " << ms_between(write_at, cannot_expire_before)
            << " ms; the hold's token fired at " << ms_between(write_at, loss.at()) << " ms\n";
  EXPECT_FALSE(gone_before_the_loss) << "etcd had revoked the lease before the hold's loss was signalled";
  EXPECT_LE(loss.at(), cannot_expire_before) << "the loss was signalled " << ms_between(cannot_expire_before, loss.at())
                                             << " ms after the earliest time etcd could expire the lease";
}

// helper-49's review of 3adac30: there, an asynchronous call with a command
// timeout to spare failed with the second of two unanswered Authenticates,
// neither made for it: the first blocking caller's (1.5 s, shorter than one
// Authenticate at this bcrypt cost), then that of a blocking caller that
// waited for it and fetched next with what little time it had left (3 of 3,
// told after 1.7 s). The asynchronous call has 20 s: it waits for up to
// three Authenticates in a row, each about 2.5 s on an idle machine and
// twice that beside other tests (it failed at 10 s in a quick run of the
// suite on 2026-12-06, once in one run; alone it was told after 5.0–6.5 s).
TEST_F(SlowAuth, AnAsyncCallIsNotFailedByTwoShortBlockingFetches) {
  const auto alice = client_as_alice(20s);
  auto& client = *alice;
  const auto read = read_of(prefix_ + "/x");
  const auto began = Steady::now();
  auto blocking = [&](Steady::time_point deadline) {
    try {
      client.txn(read, deadline);
      return std::string("answered");
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
  };
  auto first = std::async(std::launch::async, blocking, Steady::now() + 1500ms);
  std::this_thread::sleep_for(100ms);
  std::promise<std::string> outcome;
  std::atomic<long long> told_at{0};
  client.txn_async(read, client.command_deadline(), {}, [&](detail::etcd::pb::TxnResponse&&, const Error* error) {
    told_at = ms_between(began, Steady::now());
    outcome.set_value(error ? error->what() : "answered");
  });
  std::this_thread::sleep_for(100ms);
  auto second = std::async(std::launch::async, blocking, Steady::now() + 1500ms);
  std::cout << "first blocking: " << first.get() << "\nsecond blocking: " << second.get() << "\n";
  auto delivered = outcome.get_future();
  ASSERT_EQ(delivered.wait_for(25s), std::future_status::ready);
  const auto said = delivered.get();
  std::cout << "the async call (20 s deadline), told at " << told_at << " ms: " << said << "\n";
  EXPECT_EQ(said, "answered") << "failed, told at " << told_at << " ms of its 20 s";
  client.drain_async();
}

// An asynchronous call whose token etcd has forgotten (--auth-token-ttl)
// is refused, and authenticates again before it is sent once more. That
// Authenticate ran, blocking, on the gRPC thread that delivered the refusal,
// out of drain_async()'s reach: a manager's close() waited for it (one
// bcrypt-hardened Authenticate, ~2.5 s here; up to a command timeout when
// etcd does not answer), and that gRPC thread delivered nothing else
// meanwhile. Now the authentication is itself an asynchronous call, which
// drain_async() cancels like any other.
TEST_F(SlowAuth, DrainCancelsTheAuthenticationOfARefusedAsyncCall) {
  const auto alice = client_as_alice();
  auto& client = *alice;
  const auto read = read_of(prefix_ + "/x");
  ASSERT_NO_THROW(client.txn(read, Steady::now() + 10s)) << "the first call authenticates";
  // etcd forgets the token after 3 s of disuse, at the next tick of its 1 s
  // sweep: up to 4 s after that call, later under load. At 4 s this raced
  // the sweep (a failure in a loaded run of the suite could be one: the call
  // then went through with the old token).
  std::this_thread::sleep_for(5s);

  std::promise<std::string> outcome;
  client.txn_async(read, client.command_deadline(), {},
                   [&outcome](detail::etcd::pb::TxnResponse&&, const Error* error) {
                     outcome.set_value(error ? error->what() : "answered");
                   });
  std::this_thread::sleep_for(500ms);  // refused by now; authenticating again
  const auto drain_began = Steady::now();
  client.drain_async();
  const auto drain_took = ms_between(drain_began, Steady::now());
  auto delivered = outcome.get_future();
  ASSERT_EQ(delivered.wait_for(0s), std::future_status::ready) << "drain_async() returned before the call ended";
  const auto said = delivered.get();
  std::cout << "drain_async() took " << drain_took << " ms; the call: " << said << "\n";
  EXPECT_LT(drain_took, 1000) << "drain_async() waited for the authentication";
  EXPECT_NE(said, "answered") << "a call cancelled by the drain was sent";
}

ManagerOptions plain(const std::vector<std::string>& endpoints, const std::string& prefix, std::chrono::seconds ttl) {
  ManagerOptions options;
  options.endpoints = endpoints;
  options.prefix = prefix;
  options.ttl = ttl;
  options.log_sink = stderr_log_sink(LogLevel::warning);
  return options;
}

std::uint64_t keepalives(const LockManager& manager) {
  const auto requests = manager.metrics().requests;
  const auto found = requests.find("LeaseKeepAlive");
  return found == requests.end() ? 0 : found->second;
}

// CHECK (holds on dbfa1e8): no renewal storm. A member cut off from the rest
// of its cluster has no leader and fails every keepalive stream at once
// ("etcdserver: no leader", asked for by the hasleader metadata); a
// client that knows only that member renews about every 100 ms, not in a
// busy loop, until its local deadline ends the session.
TEST(ReviewSessionCluster, RenewalsOnALeaderlessMemberArePaced) {
  EtcdCluster etcd(3);
  const auto prefix = test_prefix();
  LockManager holder(plain({etcd.member(0).endpoint()}, prefix, 10s));
  auto holding = holder.get_lock("x");
  holding->lock();
  Watcher loss(holding->lost_token());
  etcd.member(1).kill();
  etcd.member(2).kill();
  std::this_thread::sleep_for(1500ms);  // the member notices it has no leader
  const auto before = keepalives(holder);
  const auto from = Steady::now();
  std::this_thread::sleep_for(3s);
  const auto opened = keepalives(holder) - before;
  const auto elapsed = ms_between(from, Steady::now());
  std::cout << opened << " keepalive streams in " << elapsed << " ms on a leaderless member; state "
            << static_cast<int>(holder.state()) << "\n";
  EXPECT_LE(opened, static_cast<std::uint64_t>(elapsed / 50)) << "renewals come faster than one per 50 ms";
  EXPECT_GE(opened, 3u) << "renewals stopped although the deadline has not passed";
  ASSERT_TRUE(eventually([&] { return loss.fired.load(); }, 15s));
}

// CHECK (holds on dbfa1e8): a renewal that etcd applies while its answer is
// held back (the proxy forwards requests and holds replies) leaves the lease
// alive in etcd longer than the session's local deadline: the loss comes
// first.
TEST(ReviewSessionProxy, HeldRenewalRepliesEndTheHoldBeforeEtcdExpiresTheLease) {
  EtcdCluster etcd(1);
  detail::etcd::Client raw(etcd.endpoints(), 5s);
  const auto prefix = test_prefix();
  TcpProxy link(port_of(etcd.endpoints()[0]));
  LockManager holder(plain({link.endpoint()}, prefix, 3s));
  auto holding = holder.get_lock("x");
  holding->lock();
  const auto lease = holder.lease_id();
  Watcher loss(holding->lost_token());
  std::this_thread::sleep_for(1500ms);
  link.hold_replies();
  const auto held_at = Steady::now();
  Steady::time_point expired_at{};
  while (Steady::now() - held_at < 15s) {
    if (raw.lease_time_to_live(lease, Steady::now() + 2s).ttl() <= 0) {
      expired_at = Steady::now();
      break;
    }
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_NE(expired_at, Steady::time_point{}) << "etcd never expired the lease";
  ASSERT_TRUE(loss.fired.load()) << "etcd expired the lease before the loss was signalled";
  std::cout << "replies held at 0 ms; loss at " << ms_between(held_at, loss.at()) << " ms; etcd expired the lease at "
            << ms_between(held_at, expired_at) << " ms\n";
  EXPECT_LT(loss.at(), expired_at);
  link.resume_replies();
}

// CHECK (holds on dbfa1e8 if it passes): no false loss with short TTLs and
// many managers on a healthy etcd, each renewal now a stream of its own.
TEST(ReviewSessionHealthy, ShortTtlsManyManagersLoseNothing) {
  EtcdCluster etcd(1);
  const auto prefix = test_prefix();
  constexpr int kManagers = 16;
  std::vector<std::unique_ptr<LockManager>> managers;
  std::vector<std::shared_ptr<Lock>> locks;
  std::vector<std::unique_ptr<Watcher>> watchers;
  for (int i = 0; i < kManagers; ++i) {
    managers.push_back(std::make_unique<LockManager>(plain(etcd.endpoints(), prefix, i % 2 == 0 ? 1s : 2s)));
    locks.push_back(managers.back()->get_lock("l" + std::to_string(i)));
    locks.back()->lock();
    watchers.push_back(std::make_unique<Watcher>(locks.back()->lost_token()));
  }
  std::this_thread::sleep_for(10s);
  for (auto& lock : locks) {
    std::error_code ec;
    lock->unlock(ec);
  }
  int lost = 0;
  for (int i = 0; i < kManagers; ++i) {
    if (watchers[i]->fired) {
      ++lost;
      std::cout << "manager " << i << " lost its hold (ttl " << (i % 2 == 0 ? 1 : 2) << " s)\n";
    }
  }
  EXPECT_EQ(lost, 0);
}

// CHECK (holds on dbfa1e8 if it passes): a member that hangs (SIGSTOP) with a
// renewal under way, and that is the only member the holder knows: each
// renewal's wait ends by the local deadline, so the loss comes before a
// contender on the other two members can acquire.
TEST(ReviewSessionCluster, HungOnlyMemberEndsTheHoldBeforeAContenderAcquires) {
  EtcdCluster etcd(3);
  const auto prefix = test_prefix();
  LockManager holder(plain({etcd.member(0).endpoint()}, prefix, 3s));
  LockManager contender(plain({etcd.member(1).endpoint(), etcd.member(2).endpoint()}, prefix, 3s));
  auto holding = holder.get_lock("x");
  holding->lock();
  Watcher loss(holding->lost_token());
  auto waiting = contender.get_lock("x");
  Steady::time_point acquired_at{};
  std::thread waiter([&] {
    if (waiting->try_lock_for(30s)) {
      acquired_at = Steady::now();
      waiting->unlock();
    }
  });
  std::this_thread::sleep_for(1200ms);  // the waiter is queued; a renewal is due soon
  const auto frozen_at = Steady::now();
  etcd.member(0).freeze();
  waiter.join();
  ASSERT_NE(acquired_at, Steady::time_point{}) << "the contender never acquired";
  ASSERT_TRUE(loss.fired.load()) << "the contender acquired before the holder's loss was signalled";
  std::cout << "member frozen at 0 ms; loss at " << ms_between(frozen_at, loss.at()) << " ms; contender acquired at "
            << ms_between(frozen_at, acquired_at) << " ms\n";
  EXPECT_LT(loss.at(), acquired_at);
  etcd.member(0).thaw();
}

}  // namespace
}  // namespace etcdlock::testing
