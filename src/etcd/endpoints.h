// Parsing of etcd endpoint lists into one gRPC target.
#pragma once

#include <string>
#include <vector>

namespace etcdlock::detail::etcd {

struct Target {
  std::string grpc_target;  // "ipv4:127.0.0.1:2379,127.0.0.1:22379", ...
  std::string description;  // the endpoints as the user wrote them, for messages
  std::string host_name;    // the first endpoint's host when it is a name, not an address
};

// Accepts "host:port", "http://host:port", "https://host:port" (with `tls`
// only) and "[v6addr]:port". Several endpoints become one target whose
// addresses gRPC tries in turn, so a dead member is skipped. Host names are
// resolved here. Throws Error(errc::invalid_argument) naming a bad endpoint.
Target parse_endpoints(const std::vector<std::string>& endpoints, bool tls = false);

}  // namespace etcdlock::detail::etcd
