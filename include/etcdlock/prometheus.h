// PrometheusExporter: a LockManager's metrics() in Prometheus' text format,
// served over HTTP for Prometheus to scrape. Part of the optional
// etcdlock::prometheus library (CMake: find_package(etcdlock COMPONENTS
// prometheus), target etcdlock::prometheus), which needs prometheus-cpp; the
// core library does not.
#pragma once

#include <memory>
#include <string>

#include "etcdlock/lock_manager.h"
#include "etcdlock/metrics.h"

namespace etcdlock {

// Metric names follow Prometheus' conventions: the etcdlock_ prefix, base
// units (seconds), _total for counters; a lock's kind and name are labels.
class PrometheusExporter {
 public:
  // Serves GET /metrics on `address` ("127.0.0.1:9464"; port 0 picks a free
  // one) until destroyed. The manager must outlive the exporter. Throws
  // Error(errc::invalid_argument) naming the address when it cannot listen.
  PrometheusExporter(const LockManager& manager, const std::string& address);
  ~PrometheusExporter();
  PrometheusExporter(const PrometheusExporter&) = delete;
  PrometheusExporter& operator=(const PrometheusExporter&) = delete;

  // The port it listens on.
  int port() const;

  // The text a scrape gets for `metrics`: for tests, and for servers of
  // one's own.
  static std::string text(const ManagerMetrics& metrics);

 private:
  struct Server;
  std::unique_ptr<Server> server_;
};

}  // namespace etcdlock
