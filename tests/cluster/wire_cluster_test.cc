// The internal client against a 3-member cluster that loses a member.
#include <gtest/gtest.h>

#include <thread>

#include "etcd/client.h"
#include "etcd/watch_hub.h"
#include "etcd_cluster.h"
#include "recording_listener.h"
#include "session/session.h"
#include "wire_helpers.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;

bool put_succeeds(const detail::etcd::Client& client, const std::string& key, const std::string& value) {
  try {
    put(client, key, value);
    return true;
  } catch (const Error&) {
    return false;
  }
}

TEST(WireCluster, CallsAndBothStreamsContinueAfterAMemberDies) {
  EtcdCluster etcd(3);
  detail::Logger log(stderr_log_sink(LogLevel::warning));
  detail::etcd::Client client(etcd.endpoints(), 1000ms);
  const auto prefix = test_prefix() + "/";
  detail::Session session(client, log, 2s, in(5s));
  detail::etcd::WatchHub hub(client, log);
  auto listener = std::make_shared<RecordingListener>();
  hub.add(prefix, detail::prefix_range_end(prefix), 0, listener);
  ASSERT_TRUE(eventually([&] { return listener->start_revision() > 0; }));
  put(client, prefix + "leased", "", session.lease_id());

  // The client starts on the first endpoint: kill that member,
  // so that every request and both streams must move.
  etcd.member(0).kill();

  EXPECT_TRUE(eventually([&] { return put_succeeds(client, prefix + "after", "1"); }, 5s));
  EXPECT_TRUE(eventually([&] { return listener->events().size() >= 2; }, 5s)) << "watch did not resume";
  std::this_thread::sleep_for(3 * session.granted_ttl());
  EXPECT_TRUE(session.alive()) << "keepalive did not move to another member";
  EXPECT_EQ(get(client, prefix + "leased").kvs_size(), 1);
  session.end(in(5s));
}

TEST(WireCluster, RestartedMemberRejoins) {
  EtcdCluster etcd(3);
  etcd.member(1).kill();
  etcd.member(1).start();
  etcd.wait_ready(1);
  detail::etcd::Client client({etcd.member(1).endpoint()}, 1000ms);
  EXPECT_TRUE(put_succeeds(client, test_prefix() + "/k", "v"));
  EXPECT_NO_THROW(etcd.leader_index());
}

}  // namespace
}  // namespace etcdlock::testing
