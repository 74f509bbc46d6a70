// The internal etcd client against a real single-member etcd.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <thread>

#include "etcd/client.h"
#include "etcd/lost_replies.h"
#include "etcd/watch_hub.h"
#include "etcd_cluster.h"
#include "recording_listener.h"
#include "session/session.h"
#include "tcp_proxy.h"
#include "wire_helpers.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
namespace pb = ::etcdserverpb;

class WireClient : public ::testing::Test {
 protected:
  EtcdCluster etcd_{1};
  detail::etcd::Client client_{etcd_.endpoints(), 5000ms};
  detail::Logger log_{stderr_log_sink(LogLevel::warning)};
  std::string prefix_ = test_prefix();
};

TEST_F(WireClient, PutRangeDelete) {
  const auto key = prefix_ + "/k";
  const auto revision = put(client_, key, "v1");
  const auto found = get(client_, key);
  ASSERT_EQ(found.kvs_size(), 1);
  EXPECT_EQ(found.kvs(0).value(), "v1");
  EXPECT_EQ(found.kvs(0).create_revision(), revision);
  EXPECT_EQ(erase(client_, key), 1);
  EXPECT_EQ(get(client_, key).kvs_size(), 0);
}

// The asynchronous calls leave their caller free: a reply that etcd holds
// back blocks no thread, the answer comes once it is sent, and shutting the
// client down cancels what is still in flight and waits for its callbacks.
TEST_F(WireClient, AsynchronousCallsBlockNoThreadAndDrainOnShutdown) {
  const auto endpoint = etcd_.endpoints()[0];
  TcpProxy link(std::stoi(endpoint.substr(endpoint.rfind(':') + 1)));
  auto client = std::make_unique<detail::etcd::Client>(std::vector<std::string>{link.endpoint()}, 5000ms);
  ASSERT_TRUE(client->wait_connected(in(5s)));
  put(client_, prefix_ + "/k", "v");
  link.hold_replies();
  std::atomic<int> answered{0};
  std::atomic<int> failed{0};
  pb::RangeRequest read;
  read.set_key(prefix_ + "/k");
  const auto started = std::chrono::steady_clock::now();
  client->range_async(read, in(5s), [&](pb::RangeResponse&& found, const Error* error) {
    if (!error && found.kvs_size() == 1) ++answered;
  });
  EXPECT_LT(std::chrono::steady_clock::now() - started, 1s) << "the caller waited for the reply";
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(answered.load(), 0) << "a reply that etcd never sent";
  link.resume_replies();
  EXPECT_TRUE(eventually([&] { return answered.load() == 1; }, 5s));

  link.hold_replies();
  client->range_async(read, in(60s), [&](pb::RangeResponse&&, const Error* error) {
    if (error) ++failed;
  });
  std::this_thread::sleep_for(100ms);
  client->drain_async();  // cancels the call in flight, and waits for its callback
  EXPECT_EQ(failed.load(), 1);
  client->range_async(read, in(5s), [&](pb::RangeResponse&&, const Error* error) {
    if (error && error->code() == errc::closed) ++failed;
  });
  EXPECT_EQ(failed.load(), 2) << "a call after the drain was not refused at once";
  link.resume_replies();
}

// The lost-reply hook: the write commits, and the caller sees only errc::unavailable.
TEST_F(WireClient, ArmedWriteSiteCommitsAndLosesItsReply) {
  using detail::etcd::LostReplies;
  const auto key = prefix_ + "/k";
  pb::TxnRequest txn;
  auto* write = txn.add_success()->mutable_request_put();
  write->set_key(key);
  write->set_value("committed");
  LostReplies::arm("test_site", prefix_ + "/other");  // another key: not this write
  LostReplies::arm("test_site", prefix_ + "/k");
  const int before = LostReplies::dropped("test_site");
  try {
    client_.txn(txn, in(5s), "test_site");
    FAIL() << "the reply came back";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), errc::unavailable);
  }
  EXPECT_EQ(LostReplies::dropped("test_site"), before + 1);
  ASSERT_EQ(get(client_, key).kvs_size(), 1);
  EXPECT_TRUE(client_.txn(txn, in(5s), "test_site").succeeded());  // armed once: the next reply comes
  EXPECT_TRUE(client_.txn(txn, in(5s)).succeeded());               // unnamed writes are never touched
  LostReplies::disarm();
}

TEST_F(WireClient, TxnWithCreateRevisionCompare) {
  const auto key = prefix_ + "/k";
  auto create_if_absent = [&] {
    pb::TxnRequest txn;
    auto* compare = txn.add_compare();
    compare->set_key(key);
    compare->set_target(pb::Compare::CREATE);
    compare->set_result(pb::Compare::EQUAL);
    compare->set_create_revision(0);
    auto* put = txn.add_success()->mutable_request_put();
    put->set_key(key);
    put->set_value("first");
    txn.add_failure()->mutable_request_range()->set_key(key);
    return client_.txn(txn, in(5s));
  };
  const auto first = create_if_absent();
  EXPECT_TRUE(first.succeeded());
  const auto second = create_if_absent();
  EXPECT_FALSE(second.succeeded());
  ASSERT_EQ(second.responses(0).response_range().kvs_size(), 1);
  EXPECT_EQ(second.responses(0).response_range().kvs(0).create_revision(), first.header().revision());
}

TEST_F(WireClient, KeepAliveKeepsAKeyAliveForMoreThanThreeTtls) {
  detail::Session session(client_, log_, 1s, in(5s));
  const auto key = prefix_ + "/leased";
  put(client_, key, "", session.lease_id());
  const auto ttl = session.granted_ttl();
  std::this_thread::sleep_for(3 * ttl + 500ms);
  EXPECT_EQ(get(client_, key).kvs_size(), 1);
  EXPECT_TRUE(session.alive());
  EXPECT_EQ(session.state(), SessionState::healthy);
  session.end(in(5s));
}

TEST_F(WireClient, RevokeRemovesTheLeasesKeys) {
  detail::Session session(client_, log_, 10s, in(5s));
  put(client_, prefix_ + "/a", "", session.lease_id());
  put(client_, prefix_ + "/b", "", session.lease_id());
  EXPECT_EQ(count_prefix(client_, prefix_ + "/"), 2);
  session.end(in(5s));
  EXPECT_EQ(count_prefix(client_, prefix_ + "/"), 0);
  EXPECT_FALSE(session.alive());
  EXPECT_FALSE(client_.lease_revoke(session.lease_id(), in(5s)));  // gone
}

TEST_F(WireClient, LeaseLossIsReportedWhenRevokedElsewhere) {
  std::atomic<int> lost{0};
  detail::Session session(client_, log_, 2s, in(5s));
  std::stop_callback on_lost(session.lost_token(), [&] { ++lost; });
  ASSERT_TRUE(client_.lease_revoke(session.lease_id(), in(5s)));
  EXPECT_TRUE(eventually([&] { return !session.alive(); }, 5s));
  // alive() turns false when the stop is requested, before the keeper thread has run the
  // callbacks: wait for the callback itself, then check that it ran exactly once.
  EXPECT_TRUE(eventually([&] { return lost.load() > 0; }, 5s));
  EXPECT_EQ(lost.load(), 1);
  EXPECT_EQ(session.state(), SessionState::lost);
}

TEST_F(WireClient, WatchReceivesADelete) {
  detail::etcd::WatchHub hub(client_, log_);
  const auto key = prefix_ + "/w";
  put(client_, key, "x");
  auto listener = std::make_shared<RecordingListener>();
  hub.add(key, "", 0, listener);
  ASSERT_TRUE(eventually([&] { return listener->start_revision() > 0; }));
  erase(client_, key);
  EXPECT_TRUE(eventually([&] { return listener->saw_delete_of(key); }));
}

TEST_F(WireClient, KeyDeletedRightAfterItsWatchIsCreatedIsNotMissed) {
  detail::etcd::WatchHub hub(client_, log_);
  for (int round = 0; round < 20; ++round) {
    const auto key = prefix_ + "/w" + std::to_string(round);
    const auto revision = put(client_, key, "x");
    auto listener = std::make_shared<RecordingListener>();
    // No wait for the watch to be created: it starts at the revision after
    // our read, so a deletion a moment later must still be delivered.
    hub.add(key, "", revision + 1, listener);
    erase(client_, key);
    EXPECT_TRUE(eventually([&] { return listener->saw_delete_of(key); })) << round;
  }
}

TEST_F(WireClient, ManyWatchersShareOneStream) {
  detail::etcd::WatchHub hub(client_, log_);
  constexpr int kWatchers = 300;
  std::vector<std::shared_ptr<RecordingListener>> listeners;
  for (int i = 0; i < kWatchers; ++i) {
    listeners.push_back(std::make_shared<RecordingListener>());
    hub.add(prefix_ + "/m" + std::to_string(i), "", 0, listeners.back());
  }
  ASSERT_TRUE(eventually([&] {
    for (const auto& listener : listeners) {
      if (listener->start_revision() == 0) return false;
    }
    return true;
  }));
  for (int i = 0; i < kWatchers; ++i) put(client_, prefix_ + "/m" + std::to_string(i), std::to_string(i));
  for (int i = 0; i < kWatchers; ++i) {
    ASSERT_TRUE(eventually([&] { return listeners[i]->events().size() == 1; })) << i;
    EXPECT_EQ(listeners[i]->events()[0].key, prefix_ + "/m" + std::to_string(i));  // its own event only
  }
  EXPECT_EQ(hub.size(), static_cast<std::size_t>(kWatchers));
}

TEST_F(WireClient, RemovedWatcherHearsNothingMore) {
  detail::etcd::WatchHub hub(client_, log_);
  auto listener = std::make_shared<RecordingListener>();
  const auto id = hub.add(prefix_ + "/r", "", 0, listener);
  ASSERT_TRUE(eventually([&] { return listener->start_revision() > 0; }));
  hub.remove(id);
  put(client_, prefix_ + "/r", "x");
  // A second watcher proves the stream delivered the put; the removed one must not see it.
  auto witness = std::make_shared<RecordingListener>();
  hub.add(prefix_ + "/r", "", listener->start_revision(), witness);
  ASSERT_TRUE(eventually([&] { return !witness->events().empty(); }));
  EXPECT_TRUE(listener->events().empty());
}

// An on-demand watcher (the hand-over inbox) is read only while someone
// demands it, or once on drain(), so that no thread waits in gRPC for it
// meanwhile; its events wait in the connection, in order, and none is lost.
// A progress request gets the reader out of the stream once the demand
// ends, or the drain is done: etcd answers it.
TEST_F(WireClient, AnOnDemandWatcherIsReadWhileDemandedAndMissesNothing) {
  using Urgency = detail::etcd::WatchHub::Urgency;
  detail::etcd::WatchHub hub(client_, log_);
  const auto key = prefix_ + "/inbox";
  auto listener = std::make_shared<RecordingListener>();
  hub.add(key, "", 0, listener, detail::etcd::WatchHub::Events::all, Urgency::on_demand);
  ASSERT_TRUE(eventually([&] { return listener->start_revision() > 0; })) << "its creation is read at once";
  ASSERT_TRUE(eventually([&] { return !hub.reading(); })) << "nothing demands reading";
  put(client_, key, "1");
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(listener->events().empty()) << "read although nobody demanded it";
  EXPECT_FALSE(hub.reading());

  hub.drain();
  ASSERT_TRUE(eventually([&] { return listener->events().size() == 1; })) << "drain() read nothing";
  EXPECT_TRUE(eventually([&] { return !hub.reading(); }, 5s)) << "the reader stayed in Read() after the drain";
  put(client_, key, "2");
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(listener->events().size(), 1u) << "read after the drain was done";

  hub.demand();
  ASSERT_TRUE(eventually([&] { return listener->events().size() == 2; }));
  put(client_, key, "3");
  ASSERT_TRUE(eventually([&] { return listener->events().size() == 3; })) << "read at once while demanded";
  hub.end_demand();
  EXPECT_TRUE(eventually([&] { return !hub.reading(); }, 5s)) << "the reader stayed in Read() after the demand";

  // A prompt watcher is read at once, and the stream with it.
  put(client_, key, "4");
  auto prompt = std::make_shared<RecordingListener>();
  const auto prompt_id = hub.add(prefix_ + "/other", "", 0, prompt);
  ASSERT_TRUE(eventually([&] { return listener->events().size() == 4; }));
  const auto events = listener->events();
  for (std::size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i].value, std::to_string(i + 1));
  hub.remove(prompt_id);
  EXPECT_TRUE(eventually([&] { return !hub.reading(); }, 5s)) << "the cancel's answer did not end the reading";
}

// A stream that breaks while nobody reads it is noticed when reading resumes:
// the on-demand watcher is made again from now (made from where it was, etcd
// would catch it up in its 100 ms loop while a waiter awaits it), and its
// listener hears of the gap, so what changed meanwhile is read anew.
TEST_F(WireClient, AnOnDemandWatcherWhoseStreamBrokeUnreadHearsOfTheGap) {
  using Urgency = detail::etcd::WatchHub::Urgency;
  const auto endpoint = etcd_.endpoints()[0];
  TcpProxy link(std::stoi(endpoint.substr(endpoint.rfind(':') + 1)));
  detail::etcd::Client client({link.endpoint()}, 2000ms);
  detail::etcd::WatchHub hub(client, log_);
  const auto key = prefix_ + "/inbox";
  auto listener = std::make_shared<RecordingListener>();
  hub.add(key, "", 0, listener, detail::etcd::WatchHub::Events::all, Urgency::on_demand);
  ASSERT_TRUE(eventually([&] { return listener->start_revision() > 0; }));
  ASSERT_TRUE(eventually([&] { return !hub.reading(); }));
  const auto opened = hub.streams_opened();
  link.cut();
  put(client_, key, "while broken");
  std::this_thread::sleep_for(300ms);
  link.restore();
  hub.demand();
  ASSERT_TRUE(eventually([&] { return listener->gaps() == 1; }, 10s)) << "the break went untold";
  EXPECT_GT(hub.streams_opened(), opened);
  put(client_, key, "after");
  ASSERT_TRUE(eventually([&] { return !listener->events().empty(); }, 5s));
  EXPECT_EQ(listener->events().back().value, "after") << "the watch did not go on from now";
  hub.end_demand();
  EXPECT_TRUE(eventually([&] { return !hub.reading(); }, 5s));
}

TEST(WireClientFailure, NothingListeningGivesUnavailableWithinTheDeadline) {
  detail::etcd::Client client({"127.0.0.1:" + std::to_string(free_port())}, 5000ms);
  const auto started = std::chrono::steady_clock::now();
  try {
    get(client, "/k");  // 5 s deadline from the helper
    FAIL() << "no error";
  } catch (const Error& error) {
    EXPECT_EQ(error.value(), errc::unavailable);
    EXPECT_NE(std::string(error.what()).find("Range"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("127.0.0.1:"), std::string::npos) << error.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, 6s);
}

TEST(WireClientFailure, FrozenMemberGivesUnavailableWithinTheDeadline) {
  EtcdCluster etcd(1);
  detail::etcd::Client client(etcd.endpoints(), 5000ms);
  get(client, "/k");  // connected
  etcd.member(0).freeze();
  const auto started = std::chrono::steady_clock::now();
  pb::RangeRequest request;
  request.set_key("/k");
  try {
    client.range(request, in(700ms));
    FAIL() << "no error";
  } catch (const Error& error) {
    EXPECT_EQ(error.value(), errc::unavailable) << error.what();
  }
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_GE(took, 600ms);
  EXPECT_LT(took, 2s);
  etcd.member(0).thaw();
}

}  // namespace
}  // namespace etcdlock::testing
