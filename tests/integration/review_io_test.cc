// Review of commit 89e6494: one completion thread ("etcdlock-io") per process
// polls every Client's unary calls and watch streams. These tests look for
// what that thread changes: a blocked io thread stalls every client of the
// process, completions racing shutdown, streams cut while writes are queued,
// and errors mapped as before.
//
// That commit is on branch callback-core, not on main (docs/design/
// event-driven-core.md says why). On main the client waits in gRPC's own
// threads, and these tests guard the same properties: no client stalls
// another, shutdown races no completion, a cut watch stream comes back. The
// FINDING tests pass on main; they failed on 89e6494.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "etcd/client.h"
#include "etcd/watch_hub.h"
#include "etcd_cluster.h"
#include "lock_fixture.h"
#include "recording_listener.h"
#include "tcp_proxy.h"
#include "wire_helpers.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
namespace pb = ::etcdserverpb;
using Clock = std::chrono::steady_clock;

std::chrono::milliseconds since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
}

// FINDING (expected to fail on 89e6494). An asynchronous call whose token etcd
// rejects is retried from its completion, i.e. on the io thread, and the retry
// fetches a new token with the synchronous Authenticate call first
// (start_async -> authorize -> authenticate). Authenticate needs a linearizable
// read in etcd 3.4, so on a member without a leader it waits out the call's
// deadline, and the one io thread of the process waits with it: a call of an
// unrelated client, to another healthy etcd, overruns its own deadline, and
// every watch event of the process waits too. Before the commit the retry ran
// on a gRPC callback thread and blocked no one else.
class IoThreadStall : public ::testing::Test {
 protected:
  IoThreadStall() { enable_auth_for_alice(secured_, prefix_); }
  ~IoThreadStall() override {
    secured_.member(1).thaw();
    secured_.member(2).thaw();
  }

  // Leaves the io thread authenticating alice's retried call for about
  // `deadline` on a member without a leader.
  void stall_io_thread(std::chrono::milliseconds deadline) {
    put(alice_, prefix_ + "/k", "v");  // alice now holds a token
    // Simple tokens do not survive a restart: alice's token is now rejected.
    // (Once etcd's backend has committed the Authenticate's index: a restart
    // within its 100 ms batch replays the Authenticate and restores the token.)
    std::this_thread::sleep_for(500ms);
    secured_.member(0).restart();
    {
      detail::etcd::Client root({secured_.endpoints()[0]}, 1000ms, {std::nullopt, "root", "rootpw"});
      ASSERT_TRUE(eventually(
          [&] {
            try {
              pb::RangeRequest read;
              read.set_key(prefix_ + "/k");
              root.range(read, in(1s));
              return true;
            } catch (const Error&) {
              return false;
            }
          },
          20s));
    }
    ASSERT_TRUE(alice_.wait_connected(in(5s)));
    // Member 0 keeps answering serializable reads (the token check is local),
    // but without a leader an Authenticate waits out its deadline.
    secured_.member(1).freeze();
    secured_.member(2).freeze();
    std::this_thread::sleep_for(500ms);
    pb::RangeRequest read;
    read.set_key(prefix_ + "/k");
    read.set_serializable(true);
    alice_.range_async(read, in(deadline), [&](pb::RangeResponse&&, const Error* error) {
      code_ = error ? static_cast<int>(error->value()) : 0;
      answered_ = true;
    });
    std::this_thread::sleep_for(300ms);  // the rejection is in, the retry authenticates
  }

  void expect_retry_failed() {
    ASSERT_TRUE(eventually([&] { return answered_.load(); }, 10s));
    // The rejected call still ends in an error, never in success.
    EXPECT_NE(code_.load(), 0);
    // Two Range requests counted: the rejected one and its retry.
    EXPECT_EQ(alice_.request_counts()["Range"], 2u) << "the token was not rejected: the retry never ran";
  }

  const std::string prefix_ = test_prefix();
  EtcdCluster secured_{3};
  EtcdCluster other_{1};
  detail::etcd::Client bystander_{other_.endpoints(), 5000ms};
  detail::etcd::Client alice_{{secured_.endpoints()[0]}, 3000ms, {std::nullopt, "alice", "alicepw"}};
  std::atomic<bool> answered_{false};
  std::atomic<int> code_{0};
};

TEST_F(IoThreadStall, AnUnrelatedClientsReadOverrunsItsDeadline) {
  ASSERT_TRUE(bystander_.wait_connected(in(5s)));
  put(bystander_, prefix_ + "/warm", "v");
  stall_io_thread(3000ms);

  const auto started = Clock::now();
  bool bystander_answered = false;
  try {
    pb::RangeRequest warm;
    warm.set_key(prefix_ + "/warm");
    bystander_answered = bystander_.range(warm, in(1s)).kvs_size() == 1;
  } catch (const Error& error) {
    ADD_FAILURE() << "the bystander's read failed: " << error.what();
  }
  const auto took = since(started);
  EXPECT_TRUE(bystander_answered);
  EXPECT_LT(took, 1500ms) << "a read of a healthy etcd with a 1 s deadline took " << took.count()
                          << " ms: the io thread was busy authenticating another client";
  expect_retry_failed();
}

// The same stall delays an unrelated client's watch event: a hold whose key
// is deleted would learn of its loss that late.
TEST_F(IoThreadStall, AnUnrelatedClientsWatchEventComesLate) {
  ASSERT_TRUE(bystander_.wait_connected(in(5s)));
  const auto key = prefix_ + "/held";
  put(bystander_, key, "v");
  detail::Logger log{stderr_log_sink(LogLevel::warning)};
  detail::etcd::WatchHub hub(bystander_, log);
  auto listener = std::make_shared<RecordingListener>();
  hub.add(key, "", 0, listener, detail::etcd::WatchHub::Events::deletes_only);
  ASSERT_TRUE(eventually([&] { return listener->start_revision() != 0; }, 5s));
  stall_io_thread(3000ms);

  // Deleted by another process: this one's calls wait for the io thread.
  const auto deleted = Clock::now();
  ASSERT_EQ(run_command("etcdctl --endpoints=" + other_.endpoints_csv() + " del " + key + " >/dev/null 2>&1"), 0);
  const auto after_delete = since(deleted);
  ASSERT_TRUE(eventually([&] { return listener->saw_delete_of(key); }, 10s));
  const auto took = since(deleted);
  EXPECT_LT(took, after_delete + 500ms) << "the delete was seen " << took.count() << " ms after it began ("
                                        << after_delete.count() << " ms for etcdctl)";
  expect_retry_failed();
}

// CHECK (held on 89e6494 when written). Clients share the io thread through a
// weak singleton: the last to go shuts the queue down and joins the thread.
// Many clients created and destroyed at once on several threads, each with
// asynchronous calls still in flight and a watch stream open, must neither
// crash nor hang, and every `done` must run exactly once.
TEST(ReviewIo, ClientsComeAndGoConcurrentlyWithCallsInFlight) {
  EtcdCluster etcd{1};
  const auto prefix = test_prefix();
  detail::Logger log{stderr_log_sink(LogLevel::error)};
  std::atomic<int> issued{0};
  std::atomic<int> done{0};
  std::atomic<int> succeeded_blocking{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 25; ++round) {
        auto client = std::make_unique<detail::etcd::Client>(etcd.endpoints(), 2000ms);
        std::unique_ptr<detail::etcd::WatchHub> hub;
        if (round % 2 == 0) {
          hub = std::make_unique<detail::etcd::WatchHub>(*client, log);
          hub->add(prefix + "/w" + std::to_string(t), "", 0, std::make_shared<RecordingListener>());
        }
        for (int i = 0; i < 5; ++i) {
          pb::RangeRequest read;
          read.set_key(prefix + "/k");
          ++issued;
          client->range_async(read, in(2s), [&](pb::RangeResponse&&, const Error*) { ++done; });
        }
        if (round % 3 == 0) {
          try {
            put(*client, prefix + "/k" + std::to_string(t), "v");
            ++succeeded_blocking;
          } catch (const Error&) {
          }
        }
        if (hub) hub->close();
        hub.reset();
        client.reset();  // calls still in flight: drained
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(done.load(), issued.load());
  EXPECT_GT(succeeded_blocking.load(), 0);
}

// CHECK (held on 89e6494 when written). The watch stream is cut by the proxy,
// again and again, while creates and cancels are queued on it; the hub must
// reopen it, re-create what is watched, deliver an event afterwards, and close
// promptly.
TEST(ReviewIo, WatchStreamCutWhileCreatesAndCancelsAreQueued) {
  EtcdCluster etcd{1};
  const auto prefix = test_prefix();
  TcpProxy link(port_of(etcd.endpoints()[0]));
  detail::etcd::Client client({link.endpoint()}, 2000ms);
  detail::etcd::Client direct(etcd.endpoints(), 2000ms);
  ASSERT_TRUE(client.wait_connected(in(5s)));
  detail::Logger log{stderr_log_sink(LogLevel::error)};
  detail::etcd::WatchHub hub(client, log);
  std::atomic<bool> stop{false};
  std::thread churn([&] {
    std::vector<std::int64_t> handles;
    int i = 0;
    while (!stop) {
      handles.push_back(
          hub.add(prefix + "/churn" + std::to_string(i++ % 50), "", 0, std::make_shared<RecordingListener>()));
      if (handles.size() > 20) {
        hub.remove(handles.front());
        handles.erase(handles.begin());
      }
    }
    for (const auto handle : handles) hub.remove(handle);
  });
  for (int cut = 0; cut < 10; ++cut) {
    std::this_thread::sleep_for(100ms);
    link.cut();
    std::this_thread::sleep_for(30ms);
    link.restore();
  }
  stop = true;
  churn.join();
  const auto key = prefix + "/after";
  auto listener = std::make_shared<RecordingListener>();
  hub.add(key, "", 0, listener);
  const auto streams_before = hub.streams_opened();
  if (!eventually([&] { return listener->start_revision() != 0; }, 10s)) {
    // Tells a wedged stream from a dead connection: unary calls share the
    // stream's connection (HTTP/2), so one that succeeds shows it alive.
    std::string unary = "a Range through the proxy succeeded";
    try {
      get(client, key);
    } catch (const Error& error) {
      unary = std::string("a Range through the proxy failed: ") + error.what();
    }
    FAIL() << "no watch created after the cuts; streams opened " << streams_before << " before the add, "
           << hub.streams_opened() << " now; " << unary;
  }
  put(direct, key, "v");
  EXPECT_TRUE(eventually([&] { return !listener->events().empty(); }, 5s));
  EXPECT_GT(hub.streams_opened(), 1u);
  const auto closing = Clock::now();
  hub.close();
  EXPECT_LT(since(closing), 2s);
}

// CHECK (held on 89e6494 when written). A frozen member with blocking and
// asynchronous writes in flight: each ends by its deadline in
// errc::unavailable (in doubt), never in success, and the client, destroyed
// with an asynchronous call still pending, returns.
TEST(ReviewIo, FrozenMemberCallsEndInDoubtByTheirDeadline) {
  EtcdCluster etcd{1};
  const auto prefix = test_prefix();
  auto client = std::make_unique<detail::etcd::Client>(etcd.endpoints(), 1000ms);
  ASSERT_TRUE(client->wait_connected(in(5s)));
  put(*client, prefix + "/k", "v0");
  etcd.member(0).freeze();
  std::atomic<int> async_code{-1};
  pb::TxnRequest write;
  auto* put_op = write.add_success()->mutable_request_put();
  put_op->set_key(prefix + "/k");
  put_op->set_value("async");
  client->txn_async(write, in(800ms), "", [&](pb::TxnResponse&&, const Error* error) {
    async_code = error ? static_cast<int>(error->value()) : 0;
  });
  std::atomic<int> pending_code{-1};
  client->range_async(pb::RangeRequest(), in(30s), [&](pb::RangeResponse&&, const Error* error) {
    pending_code = error ? static_cast<int>(error->value()) : 0;
  });
  const auto started = Clock::now();
  int blocking_code = 0;
  try {
    put_op->set_value("blocking");
    client->txn(write, in(800ms));
  } catch (const Error& error) {
    blocking_code = static_cast<int>(error.value());
  }
  const auto took = since(started);
  EXPECT_EQ(blocking_code, static_cast<int>(errc::unavailable));
  EXPECT_LT(took, 1500ms);
  EXPECT_TRUE(eventually([&] { return async_code.load() != -1; }, 3s));
  EXPECT_EQ(async_code.load(), static_cast<int>(errc::unavailable));
  const auto destroying = Clock::now();
  client.reset();  // the Range is still pending (its command timeout is 1 s)
  EXPECT_LT(since(destroying), 1500ms);
  EXPECT_NE(pending_code.load(), 0);
  EXPECT_NE(pending_code.load(), -1);
  etcd.member(0).thaw();
}

// CHECK (held on 89e6494 when written). Many managers of one process created
// and destroyed concurrently, all contending for one lock, some destroyed
// while holding it: never two holders at once, and every destruction returns.
class ManagerChurn : public LockTest {};

TEST_F(ManagerChurn, ManagersComeAndGoConcurrentlyOnOneLock) {
  std::atomic<int> inside{0};
  std::atomic<int> most{0};
  std::atomic<int> acquired{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 8; ++round) {
        auto options = this->options();
        options.log_sink = stderr_log_sink(LogLevel::error);
        auto manager = std::make_unique<LockManager>(options);
        auto lock = manager->get_lock("shared");
        if (!lock->try_lock_for(10s)) continue;
        const int now = ++inside;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        ++acquired;
        std::this_thread::sleep_for(5ms);
        --inside;
        // Every other holder goes with its manager: close() releases.
        if ((round + t) % 2 == 0) lock->unlock();
        lock.reset();
        manager.reset();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(most.load(), 1);
  EXPECT_GT(acquired.load(), 16);
}

// CHECK (held on 89e6494 when written). Process exit with the io thread's
// owner a static: a client in a function-local static, with an asynchronous
// call whose reply etcd holds back, is destroyed by exit(); the process must
// exit normally (not hang in the join, nor crash on a pending call).
TEST(ReviewIoDeathTest, ExitWithAStaticClientAndACallInFlight) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EtcdCluster etcd{1};
  const auto prefix = test_prefix();
  EXPECT_EXIT(
      {
        alarm(20);  // a hang ends in SIGALRM, not in the test's timeout
        // Static as well, so that exit() joins the proxy's threads, which
        // ThreadSanitizer would report as leaked (exit status 66) otherwise.
        static TcpProxy link(port_of(etcd.endpoints()[0]));
        static detail::etcd::Client client({link.endpoint()}, 5000ms);
        if (!client.wait_connected(in(5s))) std::_Exit(3);
        put(client, prefix + "/k", "v");
        link.hold_replies();
        pb::RangeRequest read;
        read.set_key(prefix + "/k");
        client.range_async(read, in(30s), [](pb::RangeResponse&&, const Error*) {});
        std::this_thread::sleep_for(100ms);
        std::exit(0);  // the proxy (a local) is never destroyed: the reply stays held
      },
      ::testing::ExitedWithCode(0), "");
}

// FINDING (arguable: a matter of the log sink's contract; fails on 89e6494 and
// with the proposed fix). An asynchronous call that fails with a member fault
// moves the client to another member, and abandon() logs that, on the io
// thread now. The sink's contract (etcdlock/log.h) asks it to be thread-safe
// and not to call back into etcdlock, not to be quick: a sink that blocks (a
// full pipe to a log shipper, say) holds up the replies of every client of
// the process. Before the commit it held up one gRPC callback thread.
TEST(ReviewIo, ASlowLogSinkOnTheIoThreadStallsAnUnrelatedClient) {
  EtcdCluster etcd{1};
  EtcdCluster other{1};
  const auto prefix = test_prefix();
  const int port = port_of(etcd.endpoints()[0]);
  TcpProxy first(port);
  TcpProxy second(port);
  std::atomic<int> slow_lines{0};
  detail::etcd::Client::Credentials none;
  detail::etcd::Client client({first.endpoint(), second.endpoint()}, 500ms, none,
                              detail::Logger([&](LogLevel, std::string_view message, std::span<const LogField>) {
                                if (message == "moving to another etcd member") {
                                  ++slow_lines;
                                  std::this_thread::sleep_for(3s);
                                }
                              }));
  detail::etcd::Client bystander(other.endpoints(), 5000ms);
  ASSERT_TRUE(client.wait_connected(in(5s)));
  ASSERT_TRUE(bystander.wait_connected(in(5s)));
  put(client, prefix + "/k", "v");
  put(bystander, prefix + "/warm", "v");

  // A move before the pause (a warm-up request slower than 500 ms under a
  // sanitizer) is not the one this test waits for, and leaves the client on
  // the second proxy: both are paused, so that its member, whichever it is,
  // stops answering. (With the first alone paused, the cold CI of ee9ba7e
  // waited 9 s under ThreadSanitizer for a move that never came.)
  const int moves_before = slow_lines.load();
  first.pause();
  second.pause();
  std::atomic<bool> answered{false};
  pb::RangeRequest read;
  read.set_key(prefix + "/k");
  client.range_async(read, in(10s), [&](pb::RangeResponse&&, const Error*) { answered = true; });
  // Its command timeout (500 ms) ends, and the io thread logs the move: it
  // is in the slow sink for 3 s from then. Waited for, not slept on: under
  // ThreadSanitizer 700 ms was sometimes too short for it to get there, and
  // once (three tests at a time, 2026-12-07) 5 s.
  ASSERT_TRUE(eventually([&] { return slow_lines.load() > moves_before; }, 9s))
      << "the client did not move off the paused member";

  const auto started = Clock::now();
  try {
    pb::RangeRequest warm;
    warm.set_key(prefix + "/warm");
    bystander.range(warm, in(1s));
  } catch (const Error& error) {
    ADD_FAILURE() << "the bystander's read failed: " << error.what();
  }
  const auto took = since(started);
  EXPECT_LT(took, 1500ms) << "a read of a healthy etcd with a 1 s deadline took " << took.count()
                          << " ms: the io thread was in another client's log sink";
  EXPECT_TRUE(eventually([&] { return answered.load(); }, 10s));
  first.resume();
  second.resume();
}

}  // namespace
}  // namespace etcdlock::testing
