#include "etcd/endpoints.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <charconv>
#include <memory>
#include <string_view>

#include "base/text.h"
#include "etcdlock/error.h"

namespace etcdlock::detail::etcd {
namespace {

struct HostPort {
  std::string host;
  std::string port;
};

[[noreturn]] void reject(std::string_view endpoint, std::string_view why) {
  throw Error(errc::invalid_argument, "endpoint " + quote_value(endpoint) + " " + std::string(why));
}

HostPort split_endpoint(std::string_view endpoint, bool tls) {
  std::string_view rest = endpoint;
  if (rest.starts_with("http://")) {
    if (tls) reject(endpoint, "is plain http://, but TLS options are set");
    rest.remove_prefix(7);
  } else if (rest.starts_with("https://")) {
    if (!tls) reject(endpoint, "needs TLS, and no TLS settings were given");
    rest.remove_prefix(8);
  } else if (rest.find("://") != std::string_view::npos) {
    reject(endpoint, "has a scheme other than http:// and https://");
  }
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  HostPort result;
  std::size_t colon;
  if (rest.starts_with("[")) {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) reject(endpoint, "has an unclosed '['");
    result.host = std::string(rest.substr(1, close - 1));
    colon = close + 1;
    if (colon >= rest.size() || rest[colon] != ':') reject(endpoint, "has no port (expected host:port)");
  } else {
    colon = rest.rfind(':');
    if (colon == std::string_view::npos) reject(endpoint, "has no port (expected host:port)");
    result.host = std::string(rest.substr(0, colon));
  }
  result.port = std::string(rest.substr(colon + 1));
  if (result.host.empty()) reject(endpoint, "has no host (expected host:port)");
  if (result.host.find_first_of("/ \t@?#") != std::string::npos) reject(endpoint, "has an invalid host");
  int port = 0;
  const auto [end, error] = std::from_chars(result.port.data(), result.port.data() + result.port.size(), port);
  if (error != std::errc() || end != result.port.data() + result.port.size() || port < 1 || port > 65535) {
    reject(endpoint, "has an invalid port " + quote_value(result.port));
  }
  return result;
}

// Host names are resolved here, once, because a gRPC target can list several
// addresses but only one DNS name.
std::vector<std::string> resolve(const HostPort& endpoint, std::string_view original, int& family) {
  in6_addr v6{};
  in_addr v4{};
  if (inet_pton(AF_INET, endpoint.host.c_str(), &v4) == 1) {
    family = AF_INET;
    return {endpoint.host + ":" + endpoint.port};
  }
  if (inet_pton(AF_INET6, endpoint.host.c_str(), &v6) == 1) {
    family = AF_INET6;
    return {"[" + endpoint.host + "]:" + endpoint.port};
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_family = AF_INET;
  addrinfo* found = nullptr;
  if (getaddrinfo(endpoint.host.c_str(), endpoint.port.c_str(), &hints, &found) != 0 || found == nullptr) {
    reject(original, "names a host that does not resolve to an IPv4 address");
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owner(found, &freeaddrinfo);
  family = AF_INET;
  std::vector<std::string> addresses;
  for (const addrinfo* info = found; info != nullptr; info = info->ai_next) {
    char text[INET_ADDRSTRLEN];
    const auto* address = reinterpret_cast<const sockaddr_in*>(info->ai_addr);
    if (inet_ntop(AF_INET, &address->sin_addr, text, sizeof text) != nullptr) {
      addresses.push_back(std::string(text) + ":" + endpoint.port);
    }
  }
  return addresses;
}

}  // namespace

Target parse_endpoints(const std::vector<std::string>& endpoints, bool tls) {
  if (endpoints.empty()) throw Error(errc::invalid_argument, "no etcd endpoints given");
  Target target;
  int target_family = 0;
  for (const auto& endpoint : endpoints) {
    if (!target.description.empty()) target.description += ",";
    target.description += endpoint;
    int family = 0;
    const HostPort host_port = split_endpoint(endpoint, tls);
    in6_addr v6{};
    in_addr v4{};
    const bool is_address =
        inet_pton(AF_INET, host_port.host.c_str(), &v4) == 1 || inet_pton(AF_INET6, host_port.host.c_str(), &v6) == 1;
    if (target.description.find(',') == std::string::npos && !is_address) target.host_name = host_port.host;
    for (const auto& address : resolve(host_port, endpoint, family)) {
      if (target_family != 0 && family != target_family) {
        reject(endpoint, "mixes IPv4 and IPv6 in one endpoint list");
      }
      target_family = family;
      target.members.push_back((family == AF_INET6 ? "ipv6:" : "ipv4:") + address);
    }
  }
  return target;
}

}  // namespace etcdlock::detail::etcd
