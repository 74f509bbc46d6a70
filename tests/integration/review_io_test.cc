// Review of commit 89e6494: one completion thread ("etcdlock-io") per process
// polls every Client's unary calls and watch streams. These tests look for
// what that thread changes: a blocked io thread stalls every client of the
// process, completions racing shutdown, streams cut while writes are queued,
// and errors mapped as before.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "etcd/client.h"
#include "etcd/watch_hub.h"
#include "etcd_cluster.h"
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
TEST(ReviewIo, RejectedTokenRetryOnTheIoThreadStallsAnUnrelatedClient) {
  EtcdCluster secured{3};
  const auto prefix = test_prefix();
  enable_auth_for_alice(secured, prefix);
  EtcdCluster other{1};
  detail::etcd::Client bystander(other.endpoints(), 5000ms);
  ASSERT_TRUE(bystander.wait_connected(in(5s)));
  put(bystander, prefix + "/warm", "v");

  detail::etcd::Client alice({secured.endpoints()[0]}, 3000ms, {std::nullopt, "alice", "alicepw"});
  ASSERT_TRUE(alice.wait_connected(in(5s)));
  put(alice, prefix + "/k", "v");  // alice now holds a token

  // Simple tokens do not survive a restart: alice's token is now rejected.
  // (Once etcd's backend has committed the Authenticate's index: a restart
  // within its 100 ms batch replays the Authenticate and restores the token.)
  std::this_thread::sleep_for(500ms);
  secured.member(0).restart();
  {
    detail::etcd::Client root({secured.endpoints()[0]}, 1000ms, {std::nullopt, "root", "rootpw"});
    ASSERT_TRUE(eventually(
        [&] {
          try {
            pb::RangeRequest read;
            read.set_key(prefix + "/k");
            root.range(read, in(1s));
            return true;
          } catch (const Error&) {
            return false;
          }
        },
        20s));
  }
  ASSERT_TRUE(alice.wait_connected(in(5s)));
  // Member 0 keeps answering serializable reads (the token check is local),
  // but without a leader an Authenticate waits out its deadline.
  secured.member(1).freeze();
  secured.member(2).freeze();
  std::this_thread::sleep_for(500ms);

  std::atomic<bool> answered{false};
  std::atomic<int> code{0};
  pb::RangeRequest read;
  read.set_key(prefix + "/k");
  read.set_serializable(true);
  const auto issued = Clock::now();
  alice.range_async(read, in(3s), [&](pb::RangeResponse&&, const Error* error) {
    code = error ? static_cast<int>(error->value()) : 0;
    answered = true;
  });
  std::this_thread::sleep_for(300ms);  // the rejection is in, the retry authenticates

  const auto started = Clock::now();
  bool bystander_answered = false;
  try {
    pb::RangeRequest warm;
    warm.set_key(prefix + "/warm");
    bystander_answered = bystander.range(warm, in(1s)).kvs_size() == 1;
  } catch (const Error& error) {
    ADD_FAILURE() << "the bystander's read failed: " << error.what();
  }
  const auto took = since(started);
  EXPECT_TRUE(bystander_answered);
  EXPECT_LT(took, 1500ms) << "a read of a healthy etcd with a 1 s deadline took " << took.count()
                          << " ms: the io thread was busy authenticating another client";

  ASSERT_TRUE(eventually([&] { return answered.load(); }, 10s));
  // The rejected call still ends in an error, never in success.
  EXPECT_NE(code.load(), 0) << "answered after " << since(issued).count() << " ms";
  // Two Range requests counted: the rejected one and its retry.
  EXPECT_EQ(alice.request_counts()["Range"], 2u) << "the token was not rejected: the retry never ran";
  secured.member(1).thaw();
  secured.member(2).thaw();
}

}  // namespace
}  // namespace etcdlock::testing
