#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <sstream>

#include "etcdlock/error.h"
#include "etcdlock/prometheus.h"

namespace etcdlock {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily family(std::string name, std::string help, MetricType type) {
  return MetricFamily{std::move(name), std::move(help), type, {}};
}

ClientMetric counter(double value, std::vector<ClientMetric::Label> labels) {
  ClientMetric metric;
  metric.label = std::move(labels);
  metric.counter.value = value;
  return metric;
}

ClientMetric gauge(double value, std::vector<ClientMetric::Label> labels) {
  ClientMetric metric;
  metric.label = std::move(labels);
  metric.gauge.value = value;
  return metric;
}

ClientMetric histogram(const Histogram& observed, std::vector<ClientMetric::Label> labels) {
  ClientMetric metric;
  metric.label = std::move(labels);
  metric.histogram.sample_count = observed.count;
  metric.histogram.sample_sum = observed.sum_ms / 1000;
  for (std::size_t i = 0; i < observed.upper_bounds_ms.size(); ++i) {
    metric.histogram.bucket.push_back({observed.cumulative_counts[i], observed.upper_bounds_ms[i] / 1000});
  }
  metric.histogram.bucket.push_back({observed.count, std::numeric_limits<double>::infinity()});
  return metric;
}

std::vector<MetricFamily> lock_families(const std::vector<LockMetrics>& locks) {
  auto acquisitions = family("etcdlock_acquisitions_total", "Holds taken in etcd", MetricType::Counter);
  auto try_failures = family("etcdlock_try_failures_total", "Tries that found the lock held", MetricType::Counter);
  auto timeouts = family("etcdlock_timeouts_total", "Waits that reached their deadline", MetricType::Counter);
  auto cancellations = family("etcdlock_cancellations_total", "Waits that were cancelled", MetricType::Counter);
  auto losses = family("etcdlock_losses_total", "Holds that ended involuntarily, by cause", MetricType::Counter);
  auto waiting = family("etcdlock_waiting", "Threads of this process waiting in etcd", MetricType::Gauge);
  auto wait = family("etcdlock_wait_seconds", "Time from the call to the hold", MetricType::Histogram);
  auto hold = family("etcdlock_hold_seconds", "Time from the hold to its end", MetricType::Histogram);
  for (const auto& lock : locks) {
    // The names past the limit are counted together, under name "".
    const std::vector<ClientMetric::Label> labels{{"kind", lock.kind}, {"name", lock.name}};
    acquisitions.metric.push_back(counter(static_cast<double>(lock.acquisitions), labels));
    try_failures.metric.push_back(counter(static_cast<double>(lock.try_failures), labels));
    timeouts.metric.push_back(counter(static_cast<double>(lock.timeouts), labels));
    cancellations.metric.push_back(counter(static_cast<double>(lock.cancellations), labels));
    for (const auto& [cause, count] :
         {std::pair{"lease", lock.losses_lease}, std::pair{"deleted", lock.losses_deleted},
          std::pair{"closed", lock.losses_closed}, std::pair{"unconfirmed", lock.losses_unconfirmed}}) {
      auto with_cause = labels;
      with_cause.push_back({"cause", cause});
      losses.metric.push_back(counter(static_cast<double>(count), with_cause));
    }
    waiting.metric.push_back(gauge(static_cast<double>(lock.waiting), labels));
    wait.metric.push_back(histogram(lock.wait, labels));
    hold.metric.push_back(histogram(lock.hold, labels));
  }
  return {acquisitions, try_failures, timeouts, cancellations, losses, waiting, wait, hold};
}

std::vector<MetricFamily> families(const ManagerMetrics& metrics) {
  auto state = family("etcdlock_session_state", "1 for the session's current state", MetricType::Gauge);
  for (const auto candidate :
       {SessionState::healthy, SessionState::suspect, SessionState::lost, SessionState::closed}) {
    state.metric.push_back(gauge(candidate == metrics.state ? 1 : 0, {{"state", std::string(to_string(candidate))}}));
  }
  auto time_left =
      family("etcdlock_session_time_left_seconds", "Time until the session's local deadline", MetricType::Gauge);
  time_left.metric.push_back(gauge(std::chrono::duration<double>(metrics.time_left).count(), {}));
  auto rtt = family("etcdlock_keepalive_rtt_seconds", "Time from a lease renewal to its answer", MetricType::Histogram);
  rtt.metric.push_back(histogram(metrics.keepalive_rtt, {}));
  auto renewals = family("etcdlock_renewals_failed_total", "Lease renewals unanswered in time", MetricType::Counter);
  renewals.metric.push_back(counter(static_cast<double>(metrics.renewals_failed), {}));
  auto replaced = family("etcdlock_leases_replaced_total", "Sessions that replaced a lost one", MetricType::Counter);
  replaced.metric.push_back(counter(static_cast<double>(metrics.leases_replaced), {}));
  auto restarts = family("etcdlock_watch_stream_restarts_total", "Watch streams reopened", MetricType::Counter);
  restarts.metric.push_back(counter(static_cast<double>(metrics.watch_stream_restarts), {}));
  auto requests = family("etcdlock_requests_total", "Requests to etcd, by call", MetricType::Counter);
  for (const auto& [call, count] : metrics.requests)
    requests.metric.push_back(counter(static_cast<double>(count), {{"call", call}}));
  auto errors = family("etcdlock_errors_total", "Failed requests, by error code", MetricType::Counter);
  for (const auto& [code, count] : metrics.errors)
    errors.metric.push_back(counter(static_cast<double>(count), {{"code", code}}));
  auto cycles = family("etcdlock_deadlock_cycles",
                       "Deadlock cycles under the prefix at this manager's last deadlocks() call", MetricType::Gauge);
  cycles.metric.push_back(gauge(static_cast<double>(metrics.deadlock_cycles), {}));
  auto deadlocked = family("etcdlock_deadlocked_waits",
                           "Waits of this manager in a deadlock cycle at its last deadlocks() call", MetricType::Gauge);
  deadlocked.metric.push_back(gauge(static_cast<double>(metrics.deadlocked_waits), {}));
  std::vector<MetricFamily> all{state,    time_left, rtt,    renewals, replaced,
                                restarts, requests,  errors, cycles,   deadlocked};
  for (auto& lock : lock_families(metrics.locks)) all.push_back(std::move(lock));
  return all;
}

// What the exposer collects at each scrape.
class ManagerCollectable final : public prometheus::Collectable {
 public:
  explicit ManagerCollectable(const LockManager& manager) : manager_(manager) {}
  std::vector<MetricFamily> Collect() const override { return families(manager_.metrics()); }

 private:
  const LockManager& manager_;
};

}  // namespace

struct PrometheusExporter::Server {
  std::unique_ptr<prometheus::Exposer> exposer;
  std::shared_ptr<ManagerCollectable> collectable;
};

PrometheusExporter::PrometheusExporter(const LockManager& manager, const std::string& address)
    : server_(std::make_unique<Server>()) {
  try {
    server_->exposer = std::make_unique<prometheus::Exposer>(address);
  } catch (const std::exception& error) {
    throw Error(errc::invalid_argument, "cannot serve Prometheus metrics on \"" + address + "\": " + error.what());
  }
  server_->collectable = std::make_shared<ManagerCollectable>(manager);
  server_->exposer->RegisterCollectable(server_->collectable);
}

PrometheusExporter::~PrometheusExporter() = default;

int PrometheusExporter::port() const {
  const auto ports = server_->exposer->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

std::string PrometheusExporter::text(const ManagerMetrics& metrics) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families(metrics));
  return out.str();
}

}  // namespace etcdlock
