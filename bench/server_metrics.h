// What etcd itself counts, read from its /metrics page: how many leases a run
// granted, how many keepalive and watch streams and watchers are open, and
// how many watch events it has sent.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sstream>
#include <string>

namespace etcdlock::bench {

struct ServerCounts {
  double leases_granted = 0;
  double keepalive_streams = 0;          // open now
  double keepalive_streams_started = 0;  // ever: etcdlock opens one per renewal
  double watch_streams = 0;              // open now
  double watchers = 0;
  double events_sent = 0;  // watch events sent to clients, ever
  // Raft proposals the member has seen committed, ever: every write (a Put,
  // a delete, a Txn that writes, a lease grant or revoke) is one; reads, a
  // Txn that only compares and reads, and keepalives are none.
  double proposals_committed = 0;
};

inline std::string http_get(const std::string& endpoint, const std::string& path) {
  const auto colon = endpoint.rfind(':');
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(std::stoi(endpoint.substr(colon + 1))));
  inet_pton(AF_INET, endpoint.substr(0, colon).c_str(), &address.sin_addr);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  std::string body;
  if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    const std::string request = "GET " + path + " HTTP/1.0\r\n\r\n";
    if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buffer[65536];
      for (ssize_t got; (got = read(fd, buffer, sizeof buffer)) > 0;)
        body.append(buffer, static_cast<std::size_t>(got));
    }
  }
  if (fd >= 0) close(fd);
  return body;
}

inline ServerCounts server_counts(const std::string& endpoint) {
  ServerCounts counts;
  std::istringstream page(http_get(endpoint, "/metrics"));
  auto sum_of = [](const std::string& line) { return std::stod(line.substr(line.rfind(' ') + 1)); };
  for (std::string line; std::getline(page, line);) {
    const bool keepalive = line.find("grpc_method=\"LeaseKeepAlive\"") != std::string::npos;
    const bool watch = line.find("grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\"") != std::string::npos;
    if (line.starts_with("grpc_server_started_total{")) {
      if (keepalive) counts.keepalive_streams += sum_of(line);
      if (keepalive) counts.keepalive_streams_started += sum_of(line);
      if (watch) counts.watch_streams += sum_of(line);
      if (line.find("grpc_method=\"LeaseGrant\"") != std::string::npos) counts.leases_granted += sum_of(line);
    } else if (line.starts_with("grpc_server_handled_total{")) {
      if (keepalive) counts.keepalive_streams -= sum_of(line);
      if (watch) counts.watch_streams -= sum_of(line);
    } else if (line.starts_with("etcd_debugging_mvcc_watcher_total ")) {
      counts.watchers = sum_of(line);
    } else if (line.starts_with("etcd_debugging_mvcc_events_total ")) {
      counts.events_sent = sum_of(line);
    } else if (line.starts_with("etcd_server_proposals_committed_total ")) {
      counts.proposals_committed = sum_of(line);
    }
  }
  return counts;
}

}  // namespace etcdlock::bench
