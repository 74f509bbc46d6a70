// Txns of one process sent together (etcd/txn_batcher.h), against a real
// etcd: which ones share a request, what each caller gets back, and what
// each gets when the batch is refused, times out before it leaves, or loses
// its reply after it committed.
#include <gtest/gtest.h>

#include <array>
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
#include "sanitizer.h"
#include "tcp_proxy.h"
#include "wire_helpers.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
namespace pb = ::etcdserverpb;
using detail::SteadyClock;
using detail::SteadyTime;
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
// deadline is far later: when a batch left with its earliest deadline, the
// later one (an unlock's) failed with it, in doubt, though etcd would have
// answered it in time (helper-60's review); with the latest, the short one
// would wait long past its own.
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

// Two Txns queued behind a Txn whose reply is held, their deadlines 20 ms
// apart, leave as one batch; its reply never comes. Neither fails before its
// own deadline: the batch leaves with the later one. Sent with the earlier,
// the later Txn failed in doubt 18-19 ms before its own deadline, 5 of 5
// times (helper-61's review).
TEST_F(TxnBatcherTest, NoTxnOfABatchFailsBeforeItsOwnDeadline) {
  link_.hold_replies();
  // Its 500 ms leave the second thread ample time to queue beside the first.
  std::jthread first([&] {
    EXPECT_THROW((void)client_.txn(create(prefix_ + "/f/", prefix_ + "/f/1"), in(500ms), write_site::enqueue), Error);
  });
  ASSERT_TRUE(eventually([&] { return txns_sent() == sent_before_ + 1; }));
  struct Call {
    SteadyTime deadline;
    SteadyTime ended;
    std::optional<Error> error;
  };
  Call a{in(1000ms), {}, {}};
  Call b{a.deadline + 20ms, {}, {}};
  const auto send = [&](const std::string& name, Call& call) {
    try {
      (void)client_.txn(create(prefix_ + "/" + name + "/", prefix_ + "/" + name + "/1"), call.deadline,
                        write_site::enqueue);
    } catch (const Error& error) {
      call.error = error;
    }
    call.ended = SteadyClock::now();
  };
  std::jthread a_thread([&] { send("a", a); });
  ASSERT_TRUE(eventually([&] { return client_.txns_waiting() == 1; }));
  std::jthread b_thread([&] { send("b", b); });
  a_thread.join();
  b_thread.join();
  first.join();
  link_.resume_replies();
  EXPECT_EQ(txns_sent() - sent_before_, 2u) << "the two did not share a batch";
  for (const Call* call : {&a, &b}) {
    ASSERT_TRUE(call->error) << "answered, though every reply was held";
    EXPECT_EQ(call->error->code(), errc::unavailable);
    EXPECT_GE(call->ended, call->deadline)
        << "failed, in doubt, "
        << std::chrono::duration_cast<std::chrono::microseconds>(call->deadline - call->ended).count()
        << " us before its own deadline";
  }
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

// Two try_lock_until on free names, their deadlines 20 ms apart, queued
// behind a create whose reply is held until both deadlines passed: each
// returns false on timeout, as it would alone. When the batch left with the
// earlier deadline, the later one got the batch's in-doubt error with 20 ms
// of its own left, too little for a retry, and threw unavailable, 5 of 5
// times (helper-61's review).
TEST_F(BatchedLocks, TimedTriesThatShareABatchEndAsTimeoutsNotErrors) {
  TcpProxy link(port_of(etcd_.endpoints().front()));
  auto options = options_through(link.endpoint());
  options.command_timeout = 3s;
  LockManager manager(options);
  {
    auto warm = manager.get_lock("warm");
    ASSERT_TRUE(warm->try_lock_for(5s));
    warm->unlock();
  }
  link.hold_replies();
  std::jthread hung([&] {
    try {
      (void)manager.get_lock("hung")->try_lock_for(200ms);
    } catch (const Error&) {
      // whatever it returns: the two behind it are judged
    }
  });
  std::this_thread::sleep_for(50ms);
  struct Try {
    std::optional<bool> result;
    std::optional<Error> error;
  };
  Try a;
  Try b;
  const auto deadline = SteadyClock::now() + 1000ms;
  const auto try_until = [&](const std::string& name, SteadyTime until, Try& outcome) {
    try {
      outcome.result = manager.get_lock(name)->try_lock_until(until);
    } catch (const Error& error) {
      outcome.error = error;
    }
  };
  std::jthread a_thread([&] { try_until("a", deadline, a); });
  std::this_thread::sleep_for(20ms);
  std::jthread b_thread([&] { try_until("b", deadline + 20ms, b); });
  a_thread.join();
  b_thread.join();
  hung.join();
  link.resume_replies();
  for (const Try* outcome : {&a, &b}) {
    EXPECT_FALSE(outcome->error) << outcome->error->what();
    if (outcome->result) {
      EXPECT_FALSE(*outcome->result);
    }
  }
}

// Unlocks of x and y, 20 ms apart, queue behind an unlock of z whose reply
// is held, and leave as one batch; etcd's answers are let through just after
// x's deadline, 18 ms before y's. Neither unlock fails, and neither hold
// counts as lost: etcd answered before the batch's deadline. When the batch
// left with the earlier deadline, y's unlock failed in doubt and its lost
// token fired, 3 of 3 times (helper-61's review).
//
// Under a sanitizer the answer may take longer than the 18 ms left; there an
// unlock may fail, but never before the batch's deadline (the fault failed
// both at x's).
TEST_F(BatchedLocks, AnUnlockAnsweredBeforeItsOwnDeadlineIsNotCountedLost) {
  TcpProxy link(port_of(etcd_.endpoints().front()));
  auto options = options_through(link.endpoint());
  options.command_timeout = 1s;
  LockManager manager(options);
  struct Holder {
    std::chrono::milliseconds unlock_at;
    std::error_code released;
    SteadyTime returned;
    bool lost = false;
    std::jthread thread;
  };
  std::array<Holder, 3> holders{Holder{0ms, {}, {}, false, {}}, Holder{50ms, {}, {}, false, {}},
                                Holder{70ms, {}, {}, false, {}}};  // z, x, y
  const std::array<std::string, 3> names{"z", "x", "y"};
  std::atomic<int> held{0};
  std::atomic<bool> go{false};
  SteadyTime start;
  for (std::size_t i = 0; i < holders.size(); ++i) {
    holders[i].thread = std::jthread([&, i] {
      auto lock = manager.get_lock(names[i]);
      if (!lock->try_lock_for(5s)) return;
      const auto lost = lock->lost_token();
      ++held;
      while (!go.load()) std::this_thread::sleep_for(1ms);
      std::this_thread::sleep_until(start + holders[i].unlock_at);
      lock->unlock(holders[i].released);
      holders[i].returned = SteadyClock::now();
      std::this_thread::sleep_for(200ms);
      holders[i].lost = lost.stop_requested();
    });
  }
  ASSERT_TRUE(eventually([&] { return held.load() == 3; }));
  std::this_thread::sleep_for(300ms);
  link.hold_replies();
  start = SteadyClock::now();
  go = true;
  // Just after x's deadline (start + 1.05 s), before y's (start + 1.07 s).
  std::this_thread::sleep_until(start + 1052ms);
  link.resume_replies();
  for (auto& holder : holders) holder.thread.join();
  const SteadyTime batch_deadline = start + holders[2].unlock_at + options.command_timeout;
  for (std::size_t i = 1; i < holders.size(); ++i) {
    SCOPED_TRACE(names[i]);
    if (ETCDLOCK_TEST_SANITIZED && holders[i].released) {
      EXPECT_GE(holders[i].returned, batch_deadline)
          << holders[i].released.message() << ", "
          << std::chrono::duration_cast<std::chrono::milliseconds>(batch_deadline - holders[i].returned).count()
          << " ms before the batch's deadline";
      EXPECT_TRUE(holders[i].lost);  // in doubt: given up, and signalled
      continue;
    }
    EXPECT_FALSE(holders[i].released) << holders[i].released.message();
    EXPECT_FALSE(holders[i].lost);
  }
}

}  // namespace
}  // namespace etcdlock::testing
