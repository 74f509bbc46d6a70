// Parsing of etcd endpoint lists into one gRPC target.
#pragma once

#include <string>
#include <vector>

namespace etcdlock::detail::etcd {

struct Target {
  std::string grpc_target;  // "ipv4:127.0.0.1:2379,127.0.0.1:22379", "dns:///host:2379", ...
  std::string description;  // the endpoints as the user wrote them, for messages
};

// Accepts "host:port", "http://host:port" and "[v6addr]:port". Several
// endpoints become one target whose addresses gRPC tries in turn, so a dead
// member is skipped. Throws Error(errc::invalid_argument) naming a bad endpoint.
Target parse_endpoints(const std::vector<std::string>& endpoints);

}  // namespace etcdlock::detail::etcd
