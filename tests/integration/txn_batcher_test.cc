// Txns of one process sent together (etcd/txn_batcher.h), against a real
// etcd: which ones share a request, what each caller gets back, and what
// each gets when the batch is refused, times out before it leaves, or loses
// its reply after it committed.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "etcd/client.h"
#include "etcd/lost_replies.h"
#include "etcd_cluster.h"
#include "expect_error.h"
#include "lock_fixture.h"
#include "tcp_proxy.h"
#include "wire_helpers.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
namespace pb = ::etcdserverpb;
using detail::etcd::LostReplies;
namespace write_site = detail::etcd::write_site;

// A queue entry's create as the library sends it: if the key is new, put it
// (on `lease`) and read the queue's directory; else read the key.
pb::TxnRequest create(const std::string& dir, const std::string& key, std::int64_t lease = 0) {
  pb::TxnRequest txn;
  auto* compare = txn.add_compare();
  compare->set_key(key);
  compare->set_target(pb::Compare::CREATE);
  compare->set_result(pb::Compare::EQUAL);
  compare->set_create_revision(0);
  auto* put = txn.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value("v");
  put->set_lease(lease);
  auto* read = txn.add_success()->mutable_request_range();
  read->set_key(dir);
  read->set_range_end(detail::prefix_range_end(dir));
  txn.add_failure()->mutable_request_range()->set_key(key);
  return txn;
}

class TxnBatcherTest : public ::testing::Test {
 protected:
  ~TxnBatcherTest() override { LostReplies::disarm(); }

  int etcd_port() const {
    const auto endpoint = etcd_.endpoints()[0];
    return std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  }
  std::uint64_t txns_sent() const { return client_.request_counts().at("Txn"); }

  // Sends `first` and holds its reply back until the others queued behind
  // it; then lets it through, so that the others leave together.
  struct Outcome {
    std::optional<pb::TxnResponse> response;
    std::optional<Error> error;
  };
  std::vector<Outcome> send_behind_a_held_reply(const pb::TxnRequest& first, const std::vector<pb::TxnRequest>& others,
                                                std::chrono::milliseconds deadline = 10s) {
    std::vector<Outcome> outcomes(others.size() + 1);
    const auto send = [&](const pb::TxnRequest& request, Outcome& outcome, std::chrono::milliseconds timeout) {
      try {
        outcome.response = client_.txn(request, in(timeout), write_site::enqueue);
      } catch (const Error& error) {
        outcome.error = error;
      }
    };
    const auto sent_before = txns_sent();
    link_.hold_replies();
    std::vector<std::jthread> threads;
    threads.emplace_back([&] { send(first, outcomes[0], 10s); });
    EXPECT_TRUE(eventually([&] { return txns_sent() == sent_before + 1; })) << "the first Txn did not leave";
    for (std::size_t i = 0; i < others.size(); ++i) {
      threads.emplace_back([&, i] { send(others[i], outcomes[i + 1], deadline); });
    }
    EXPECT_TRUE(eventually([&] { return client_.txns_waiting() == others.size(); }))
        << client_.txns_waiting() << " Txns queued";
    link_.resume_replies();
    threads.clear();
    return outcomes;
  }

  EtcdCluster etcd_{1};
  TcpProxy link_{etcd_port()};
  detail::etcd::Client client_{{link_.endpoint()}, 5000ms};
  detail::etcd::Client raw_{etcd_.endpoints(), 5000ms};
  std::string prefix_ = test_prefix();
  std::uint64_t sent_before_ = [this] {
    EXPECT_TRUE(client_.wait_connected(in(5s)));
    return txns_sent();
  }();
};

// Txns on disjoint keys that queued behind another leave as one request, at
// one revision; each caller gets its own Txn's reply.
TEST_F(TxnBatcherTest, TxnsOnDisjointKeysThatQueuedLeaveTogether) {
  const auto outcomes =
      send_behind_a_held_reply(create(prefix_ + "/a/", prefix_ + "/a/1"),
                               {create(prefix_ + "/b/", prefix_ + "/b/1"), create(prefix_ + "/c/", prefix_ + "/c/1")});
  for (const auto& outcome : outcomes) {
    ASSERT_TRUE(outcome.response) << outcome.error->what();
    EXPECT_TRUE(outcome.response->succeeded());
    ASSERT_EQ(outcome.response->responses_size(), 2);
    EXPECT_EQ(outcome.response->responses(1).response_range().kvs_size(), 1);
  }
  EXPECT_EQ(txns_sent() - sent_before_, 2u) << "the two queued Txns did not leave together";
  const auto revision = outcomes[1].response->header().revision();
  EXPECT_EQ(outcomes[2].response->header().revision(), revision);
  EXPECT_GT(revision, outcomes[0].response->header().revision());
  EXPECT_EQ(get(raw_, prefix_ + "/b/1").kvs(0).create_revision(), revision);
  EXPECT_EQ(get(raw_, prefix_ + "/c/1").kvs(0).create_revision(), revision);
  // A Txn whose compare fails takes its own failure branch, whatever the
  // other's does.
  const auto again =
      send_behind_a_held_reply(create(prefix_ + "/a/", prefix_ + "/a/2"),
                               {create(prefix_ + "/b/", prefix_ + "/b/1"), create(prefix_ + "/c/", prefix_ + "/c/2")});
  for (const auto& outcome : again) ASSERT_TRUE(outcome.response) << outcome.error->what();
  EXPECT_FALSE(again[1].response->succeeded());
  EXPECT_TRUE(again[2].response->succeeded());
  EXPECT_EQ(txns_sent() - sent_before_, 4u);
}

// Two Txns that touch one key (two entries of one queue: their order is their
// create revisions) never share a request.
TEST_F(TxnBatcherTest, TxnsThatTouchOneQueueLeaveOneAfterTheOther) {
  const auto outcomes =
      send_behind_a_held_reply(create(prefix_ + "/a/", prefix_ + "/a/1"),
                               {create(prefix_ + "/q/", prefix_ + "/q/1"), create(prefix_ + "/q/", prefix_ + "/q/2")});
  for (const auto& outcome : outcomes) ASSERT_TRUE(outcome.response) << outcome.error->what();
  EXPECT_EQ(txns_sent() - sent_before_, 3u);
  EXPECT_NE(outcomes[1].response->header().revision(), outcomes[2].response->header().revision());
  EXPECT_NE(get(raw_, prefix_ + "/q/1").kvs(0).create_revision(), get(raw_, prefix_ + "/q/2").kvs(0).create_revision());
}

// etcd refuses a batch with a Txn on a lease it does not know, and applies
// none of it: each Txn is sent again alone, and the refusal is the bad one's.
TEST_F(TxnBatcherTest, ARefusedBatchIsSentAgainOneByOne) {
  const auto outcomes = send_behind_a_held_reply(
      create(prefix_ + "/a/", prefix_ + "/a/1"),
      {create(prefix_ + "/b/", prefix_ + "/b/1"), create(prefix_ + "/c/", prefix_ + "/c/1", 0x7e57deadbeef)});
  ASSERT_TRUE(outcomes[1].response) << outcomes[1].error->what();
  EXPECT_TRUE(outcomes[1].response->succeeded());
  ASSERT_TRUE(outcomes[2].error);
  EXPECT_EQ(outcomes[2].error->code(), errc::invalid_argument) << outcomes[2].error->what();
  EXPECT_EQ(txns_sent() - sent_before_, 4u) << "the first, the refused batch, and each of its two again";
  EXPECT_EQ(get(raw_, prefix_ + "/b/1").kvs_size(), 1);
  EXPECT_EQ(get(raw_, prefix_ + "/c/1").kvs_size(), 0);
}

// A Txn whose deadline passes while it waits for a batch was never sent: it
// fails, and etcd never sees it.
TEST_F(TxnBatcherTest, ATxnWhoseDeadlinePassesInTheQueueIsNotSent) {
  const auto outcomes = send_behind_a_held_reply(create(prefix_ + "/a/", prefix_ + "/a/1"), {}, 10s);
  ASSERT_TRUE(outcomes[0].response);
  link_.hold_replies();
  std::jthread first(
      [&] { (void)client_.txn(create(prefix_ + "/a/", prefix_ + "/a/2"), in(10s), write_site::enqueue); });
  ASSERT_TRUE(eventually([&] { return txns_sent() == sent_before_ + 2; }));
  expect_error(errc::unavailable, "deadline passed while it waited",
               [&] { (void)client_.txn(create(prefix_ + "/b/", prefix_ + "/b/1"), in(300ms), write_site::enqueue); });
  EXPECT_EQ(client_.txns_waiting(), 0u);
  link_.resume_replies();
  first.join();
  EXPECT_EQ(txns_sent() - sent_before_, 2u);
  EXPECT_EQ(get(raw_, prefix_ + "/b/1").kvs_size(), 0);
}

// A Txn with a short deadline does not share a request with one whose
// deadline is far later: a batch leaves with its earliest deadline, and the
// later one (an unlock's) would fail with it, in doubt, though etcd would
// have answered it in time (helper-60's review).
TEST_F(TxnBatcherTest, ATxnIsNotFailedByTheShortDeadlineOfAnother) {
  link_.hold_replies();
  const auto sent_before = txns_sent();
  std::jthread first([&] {
    EXPECT_THROW((void)client_.txn(create(prefix_ + "/a/", prefix_ + "/a/1"), in(300ms), write_site::enqueue), Error);
  });
  ASSERT_TRUE(eventually([&] { return txns_sent() == sent_before + 1; }));
  std::optional<pb::TxnResponse> long_reply;
  std::optional<Error> long_error;
  std::jthread long_wait([&] {
    try {
      long_reply = client_.txn(create(prefix_ + "/l/", prefix_ + "/l/1"), in(10s), write_site::release);
    } catch (const Error& error) {
      long_error = error;
    }
  });
  ASSERT_TRUE(eventually([&] { return client_.txns_waiting() == 1; }));
  std::jthread short_wait([&] {
    EXPECT_THROW((void)client_.txn(create(prefix_ + "/s/", prefix_ + "/s/1"), in(700ms), write_site::enqueue), Error);
  });
  ASSERT_TRUE(eventually([&] { return client_.txns_waiting() == 2; }));
  std::this_thread::sleep_for(1200ms);
  link_.resume_replies();
  first.join();
  long_wait.join();
  short_wait.join();
  ASSERT_TRUE(long_reply) << long_error->what();
  EXPECT_TRUE(long_reply->succeeded());
  // The short one waited behind the long one, and its deadline passed before it left.
  EXPECT_EQ(txns_sent() - sent_before, 2u) << "the short and the long Txn left together";
}

// A batch whose reply is lost after it committed leaves every Txn of it in
// doubt: each caller gets the error, though each Txn committed.
TEST_F(TxnBatcherTest, ABatchWhoseReplyIsLostLeavesEachOfItsTxnsInDoubt) {
  LostReplies::arm(write_site::enqueue, prefix_ + "/b/");
  const auto outcomes =
      send_behind_a_held_reply(create(prefix_ + "/a/", prefix_ + "/a/1"),
                               {create(prefix_ + "/b/", prefix_ + "/b/1"), create(prefix_ + "/c/", prefix_ + "/c/1")});
  ASSERT_TRUE(outcomes[0].response);
  for (int i : {1, 2}) {
    ASSERT_TRUE(outcomes[i].error) << "Txn " << i << " was answered";
    EXPECT_EQ(outcomes[i].error->code(), errc::unavailable);
  }
  EXPECT_EQ(txns_sent() - sent_before_, 2u);
  EXPECT_EQ(get(raw_, prefix_ + "/b/1").kvs_size(), 1);
  EXPECT_EQ(get(raw_, prefix_ + "/c/1").kvs_size(), 1);
}

// Many threads of one manager, each on names of its own, beside a second
// manager on the same names: their Txns share requests, and still no name
// has two holders, whatever replies are lost, and nothing is left behind.
class BatchedLocks : public LockTest {
 protected:
  ~BatchedLocks() override { LostReplies::disarm(); }
};

TEST_F(BatchedLocks, ManyThreadsShareRequestsWithoutTwoHoldersEvenWhenRepliesAreLost) {
  constexpr int kNames = 12;
  constexpr int kTurns = 15;
  auto first = manager();
  auto second = manager();
  std::vector<std::atomic<int>> inside(kNames);
  std::atomic<int> overlaps{0};
  std::atomic<int> failures{0};
  // Replies lost at either write, on any of the names.
  LostReplies::arm(write_site::enqueue, prefix_ + "/", 4);
  LostReplies::arm(write_site::release, prefix_ + "/", 4);
  {
    std::vector<std::jthread> threads;
    for (auto* owner : {first.get(), second.get()}) {
      for (int name = 0; name < kNames; ++name) {
        threads.emplace_back([&, owner, name] {
          auto lock = owner->get_lock("n" + std::to_string(name));
          for (int turn = 0; turn < kTurns; ++turn) {
            try {
              if (!lock->try_lock_for(20s)) {
                ++failures;
                continue;
              }
            } catch (const Error& error) {
              ADD_FAILURE() << error.what();
              ++failures;
              continue;
            }
            if (inside[name].fetch_add(1) != 0) ++overlaps;
            std::this_thread::sleep_for(1ms);
            inside[name].fetch_sub(1);
            std::error_code released;
            lock->unlock(released);
          }
        });
      }
    }
  }
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(failures.load(), 0);
  const auto acquisitions = 2 * kNames * kTurns;
  const auto sent = first->metrics().requests.at("Txn") + second->metrics().requests.at("Txn");
  EXPECT_LT(sent, 2u * acquisitions) << "no two Txns ever shared a request";
  EXPECT_TRUE(eventually([&] { return all_keys() == 0; }, 20s)) << all_keys() << " keys left";
}

}  // namespace
}  // namespace etcdlock::testing
