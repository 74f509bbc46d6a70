// What a manager tells about itself: session changes as events, in order;
// metrics counted exactly; and the Prometheus exporter's text, parsed.
#include <gtest/gtest.h>

#include <cstring>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "etcdlock/prometheus.h"
#include "expect_error.h"
#include "lock_fixture.h"
#include "tcp_proxy.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;

class Observability : public LockTest {
 protected:
  // Records the session's events.
  struct Events {
    std::mutex mu;
    std::vector<SessionEvent> seen;
    SessionListener listener() {
      return [this](const SessionEvent& event) {
        std::lock_guard lock(mu);
        seen.push_back(event);
      };
    }
    std::vector<SessionState> states() {
      std::lock_guard lock(mu);
      std::vector<SessionState> result;
      for (const auto& event : seen) result.push_back(event.state);
      return result;
    }
    std::vector<SessionEvent> all() {
      std::lock_guard lock(mu);
      return seen;
    }
  };

  const LockMetrics* find(const ManagerMetrics& metrics, const std::string& name) {
    for (const auto& lock : metrics.locks) {
      if (lock.name == name) return &lock;
    }
    return nullptr;
  }
};

TEST_F(Observability, SessionChangesAreReportedInOrder) {
  const auto endpoint = etcd_.endpoints()[0];
  TcpProxy link(std::stoi(endpoint.substr(endpoint.rfind(':') + 1)));
  auto through = options();
  through.endpoints = {link.endpoint()};
  through.ttl = 10s;
  auto manager = std::make_unique<LockManager>(through);
  Events events;
  auto subscription = manager->subscribe(events.listener());
  // The first call says where the session stands now.
  ASSERT_TRUE(eventually([&] { return events.states().size() == 1; }, 10s));
  EXPECT_EQ(events.all()[0].state, SessionState::healthy);
  EXPECT_EQ(events.all()[0].lease_id, manager->lease_id());
  EXPECT_FALSE(events.all()[0].replaced);
  auto held = manager->get_lock("held");  // so that an admin may revoke the lease
  held->lock();

  link.pause();  // renewals go unanswered
  ASSERT_TRUE(eventually([&] { return events.states().size() == 2; }, 10s));
  EXPECT_EQ(events.all()[1].state, SessionState::suspect);
  EXPECT_GT(events.all()[1].time_left, 0ms);
  EXPECT_LE(events.all()[1].time_left, 8s);
  EXPECT_GT(manager->time_left(), 0ms);
  {
    // A subscriber that comes while the session is suspect learns so at once.
    Events late;
    auto late_subscription = manager->subscribe(late.listener());
    ASSERT_TRUE(eventually([&] { return !late.states().empty(); }, 10s));
    EXPECT_EQ(late.all()[0].state, SessionState::suspect);
    EXPECT_GT(late.all()[0].time_left, 0ms);
  }
  link.resume();
  ASSERT_TRUE(eventually([&] { return events.states().size() == 3; }, 10s));

  auto admin = this->manager();
  ASSERT_TRUE(admin->revoke_lease(manager->lease_id()));
  ASSERT_TRUE(eventually([&] { return events.states().size() == 4; }, 10s));
  std::error_code ec;
  held->unlock(ec);
  auto lock = manager->get_lock("x");
  lock->lock();  // takes a new lease
  lock->unlock();
  ASSERT_TRUE(eventually([&] { return events.states().size() == 5; }, 10s));
  manager->close();
  const auto seen = events.all();
  ASSERT_EQ(seen.size(), 6u);
  using S = SessionState;
  EXPECT_EQ(events.states(), (std::vector<S>{S::healthy, S::suspect, S::healthy, S::lost, S::healthy, S::closed}));
  EXPECT_FALSE(seen[2].replaced);
  EXPECT_TRUE(seen[4].replaced) << "the new lease replaced the lost one";
  EXPECT_NE(seen[4].lease_id, seen[3].lease_id);
  EXPECT_FALSE(seen[3].reason.empty());
}

TEST_F(Observability, AnEtcdRestartLosesNoSession) {
  auto manager = this->manager(10s);
  Events events;
  auto subscription = manager->subscribe(events.listener());
  auto lock = manager->get_lock("x");
  lock->lock();
  etcd_.member(0).restart();
  etcd_.wait_ready(0);
  std::this_thread::sleep_for(2s);
  for (const auto state : events.states()) EXPECT_NE(state, SessionState::lost);
  EXPECT_TRUE(lock->held());
  EXPECT_TRUE(eventually([&] { return manager->state() == SessionState::healthy; }, 10s));
  lock->unlock();
}

TEST_F(Observability, MetricsCountAScriptedScenarioExactly) {
  auto manager = this->manager();
  auto other = this->manager();
  auto x = manager->get_lock("x");
  for (int i = 0; i < 5; ++i) {
    x->lock();
    x->lock();  // reentrant: no acquisition in etcd
    x->unlock();
    x->unlock();
  }
  auto busy = other->get_lock("y");
  busy->lock();
  auto y = manager->get_lock("y");
  EXPECT_FALSE(y->try_lock_for(200ms));
  EXPECT_FALSE(y->try_lock());
  busy->unlock();
  auto z = manager->get_lock("z");
  z->lock();
  ASSERT_TRUE(other->force_unlock("z"));
  ASSERT_TRUE(eventually([&] { return !z->held(); }));
  std::error_code ec;
  z->unlock(ec);

  const auto metrics = manager->metrics();
  const auto* counted_x = find(metrics, "x");
  const auto* counted_y = find(metrics, "y");
  const auto* counted_z = find(metrics, "z");
  ASSERT_TRUE(counted_x && counted_y && counted_z);
  EXPECT_EQ(counted_x->kind, "lock");
  EXPECT_EQ(counted_x->acquisitions, 5u);
  EXPECT_EQ(counted_x->wait.count, 5u);
  EXPECT_EQ(counted_x->hold.count, 5u);
  EXPECT_EQ(counted_x->losses_deleted + counted_x->losses_lease + counted_x->losses_closed, 0u);
  EXPECT_EQ(counted_y->acquisitions, 0u);
  EXPECT_EQ(counted_y->timeouts, 1u);
  EXPECT_EQ(counted_y->try_failures, 1u);
  EXPECT_EQ(counted_y->waiting, 0);
  EXPECT_EQ(counted_z->acquisitions, 1u);
  EXPECT_EQ(counted_z->losses_deleted, 1u);
  EXPECT_EQ(counted_z->losses_lease, 0u);
  EXPECT_EQ(metrics.state, SessionState::healthy);
  EXPECT_GT(metrics.requests.at("Txn"), 0u);
  // The first renewal goes a third of the TTL after the lease was granted.
  EXPECT_TRUE(eventually([&] { return manager->metrics().keepalive_rtt.count > 0; }, 8s));
  EXPECT_EQ(metrics.leases_replaced, 0u);
}

TEST_F(Observability, NamesPastTheLimitAreCountedTogether) {
  auto limited = options();
  limited.metrics_names = 2;
  LockManager manager(limited);
  for (const char* name : {"a", "b", "c", "d"}) {
    auto lock = manager.get_lock(name);
    lock->lock();
    lock->unlock();
  }
  const auto metrics = manager.metrics();
  ASSERT_EQ(metrics.locks.size(), 3u);
  const auto* rest = find(metrics, "");
  ASSERT_TRUE(rest);
  EXPECT_EQ(rest->acquisitions, 2u);
  auto off = options();
  off.metrics = false;
  LockManager quiet(off);
  auto lock = quiet.get_lock("a");
  lock->lock();
  lock->unlock();
  EXPECT_TRUE(quiet.metrics().locks.empty());
}

// Every line of the exporter's text is a comment or a sample of a declared
// metric, in Prometheus' text format.
TEST_F(Observability, TheExporterServesPrometheusText) {
  auto manager = this->manager();
  auto lock = manager->get_lock("x");
  lock->lock();
  lock->unlock();
  PrometheusExporter exporter(*manager, "127.0.0.1:0");
  ASSERT_GT(exporter.port(), 0);
  std::string scraped;
  const std::string get = "bash -c 'exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(exporter.port()) +
                          "; printf \"GET /metrics HTTP/1.0\\r\\n\\r\\n\" >&3; cat <&3'";
  ASSERT_EQ(run_command(get, &scraped), 0);
  const auto body_at = scraped.find("\r\n\r\n");
  ASSERT_NE(body_at, std::string::npos) << scraped;
  const std::string body = scraped.substr(body_at + 4);

  const std::regex type_line(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped))");
  const std::regex sample_line(R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})? (\S+)( \d+)?)");
  std::set<std::string> declared;
  std::set<std::string> sampled;
  std::istringstream lines(body);
  int samples = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line.starts_with("# HELP ")) continue;
    std::smatch match;
    if (std::regex_match(line, match, type_line)) {
      declared.insert(match[1]);
      continue;
    }
    ASSERT_TRUE(std::regex_match(line, match, sample_line)) << "not Prometheus text: " << line;
    std::string name = match[1];
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (!declared.contains(name) && name.ends_with(suffix)) name = name.substr(0, name.size() - std::strlen(suffix));
    }
    EXPECT_TRUE(declared.contains(name)) << "a sample of an undeclared metric: " << line;
    const std::string value = match[4];
    // (prometheus-cpp's own exposer_ metrics write NaN as "Nan"; Prometheus
    // reads either, as Go's ParseFloat does.)
    EXPECT_TRUE(value == "+Inf" || value == "-Inf" || value == "NaN" || value == "Nan" ||
                std::regex_match(value, std::regex(R"(-?[0-9.eE+-]+)")))
        << line;
    sampled.insert(name);
    ++samples;
  }
  EXPECT_GT(samples, 20);
  for (const char* name :
       {"etcdlock_acquisitions_total", "etcdlock_wait_seconds", "etcdlock_hold_seconds", "etcdlock_losses_total",
        "etcdlock_session_state", "etcdlock_keepalive_rtt_seconds", "etcdlock_requests_total", "etcdlock_errors_total",
        "etcdlock_renewals_failed_total", "etcdlock_deadlock_cycles", "etcdlock_deadlocked_waits"}) {
    EXPECT_TRUE(sampled.contains(name)) << name;
  }
  EXPECT_NE(body.find(R"(etcdlock_acquisitions_total{kind="lock",name="x"} 1)"), std::string::npos) << body;
  // The same families in the same order, scrape after scrape (values move:
  // time left, keepalive round trips).
  const auto families = [](const std::string& text) {
    std::vector<std::string> names;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      if (line.starts_with("# TYPE ")) names.push_back(line);
    }
    return names;
  };
  EXPECT_EQ(families(PrometheusExporter::text(manager->metrics())),
            families(PrometheusExporter::text(manager->metrics())));
  expect_error(errc::invalid_argument, "not-an-address", [&] { PrometheusExporter bad(*manager, "not-an-address"); });
}

}  // namespace
}  // namespace etcdlock::testing
