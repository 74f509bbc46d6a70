// A user's program of the optional Prometheus component: it links against
// etcdlock::prometheus alone (prometheus-cpp comes with it) and gets text.
#include <etcdlock/prometheus.h>

#include <iostream>

int main() {
  etcdlock::ManagerMetrics metrics;
  metrics.requests["Txn"] = 3;
  const auto text = etcdlock::PrometheusExporter::text(metrics);
  if (text.find("etcdlock_") == std::string::npos) {
    std::cerr << "no etcdlock_ metric in:\n" << text;
    return 1;
  }
  std::cout << "prometheus consumer ok\n";
  return 0;
}
