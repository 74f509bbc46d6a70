// Manager options for the examples: endpoints from ETCDLOCK_ENDPOINTS
// ("host:port,host:port"), else etcd's default 127.0.0.1:2379.
#pragma once

#include <cstdlib>
#include <sstream>
#include <string>

#include "etcdlock/etcdlock.h"

inline etcdlock::ManagerOptions example_options() {
  etcdlock::ManagerOptions options;
  if (const char* endpoints = std::getenv("ETCDLOCK_ENDPOINTS"); endpoints != nullptr && *endpoints != '\0') {
    options.endpoints.clear();
    std::stringstream list(endpoints);
    for (std::string endpoint; std::getline(list, endpoint, ',');) options.endpoints.push_back(endpoint);
  }
  options.prefix = "/myapp/locks";
  options.ttl = std::chrono::seconds(30);
  return options;
}
