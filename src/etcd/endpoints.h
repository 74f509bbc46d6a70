// Parsing of etcd endpoint lists into the members the client connects to.
#pragma once

#include <string>
#include <vector>

namespace etcdlock::detail::etcd {

struct Target {
  // One gRPC target per member address: "ipv4:127.0.0.1:2379", "ipv6:[::1]:2379".
  std::vector<std::string> members;
  std::string description;  // the endpoints as the user wrote them, for messages
  std::string host_name;    // the first endpoint's host when it is a name, not an address
};

// Accepts "host:port", "http://host:port", "https://host:port" (with `tls`
// only) and "[v6addr]:port". Every address becomes a member of its own, so
// that the client can choose which one to use and move away from one that
// fails or hangs. Host names are resolved here. Throws
// Error(errc::invalid_argument) naming a bad endpoint.
Target parse_endpoints(const std::vector<std::string>& endpoints, bool tls = false);

}  // namespace etcdlock::detail::etcd
