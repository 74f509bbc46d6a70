#include "tcp_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>

namespace etcdlock::testing {
namespace {

sockaddr_in loopback(int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  return address;
}

}  // namespace

TcpProxy::TcpProxy(int target_port) : target_port_(target_port) {
  listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  auto address = loopback(0);
  socklen_t length = sizeof address;
  if (listener_ < 0 || bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      listen(listener_, 64) != 0 || getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    throw std::runtime_error("proxy: cannot listen");
  }
  port_ = ntohs(address.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

TcpProxy::~TcpProxy() {
  stopping_ = true;
  acceptor_.join();
  {
    std::lock_guard lock(mu_);
    for (int fd : sockets_) shutdown(fd, SHUT_RDWR);
  }
  for (auto& pump : pumps_) pump.join();
  for (int fd : sockets_) close(fd);
  close(listener_);
}

void TcpProxy::cut() {
  cut_ = true;
  std::lock_guard lock(mu_);
  for (int fd : sockets_) shutdown(fd, SHUT_RDWR);
}

void TcpProxy::accept_loop() {
  while (!stopping_) {
    pollfd ready{listener_, POLLIN, 0};
    if (poll(&ready, 1, 20) <= 0) continue;
    const int client = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    if (cut_) {
      close(client);
      continue;
    }
    const int server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const auto target = loopback(target_port_);
    if (server < 0 || connect(server, reinterpret_cast<const sockaddr*>(&target), sizeof target) != 0) {
      close(client);
      if (server >= 0) close(server);
      continue;
    }
    std::lock_guard lock(mu_);
    sockets_.push_back(client);
    sockets_.push_back(server);
    pumps_.emplace_back([this, client, server] { pump(client, server, false); });
    pumps_.emplace_back([this, client, server] { pump(server, client, true); });
  }
}

void TcpProxy::pause() {
  std::lock_guard gate(gate_);
  paused_ = true;
}

void TcpProxy::hold_replies() {
  std::lock_guard gate(gate_);
  replies_held_ = true;
}

void TcpProxy::pump(int from, int to, bool replies) {
  char buffer[16384];
  while (!stopping_) {
    if (paused_ || (replies && replies_held_)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      continue;
    }
    pollfd ready{from, POLLIN, 0};
    if (poll(&ready, 1, 20) <= 0) continue;
    // The proxy may have been paused, or replies held, while this pump
    // waited: look again, under the gate, so that nothing is forwarded once
    // pause() or hold_replies() has returned.
    std::unique_lock gate(gate_);
    if (paused_ || (replies && replies_held_)) continue;
    const ssize_t got = read(from, buffer, sizeof buffer);
    if (got <= 0) {
      shutdown(to, SHUT_WR);
      return;
    }
    for (ssize_t sent = 0; sent < got;) {
      // MSG_NOSIGNAL: a peer that closed must not raise SIGPIPE in the test.
      const ssize_t wrote = send(to, buffer + sent, static_cast<std::size_t>(got - sent), MSG_NOSIGNAL);
      if (wrote <= 0) return;
      sent += wrote;
    }
  }
}

int port_of(std::string_view endpoint) { return std::stoi(std::string(endpoint.substr(endpoint.rfind(':') + 1))); }

ProxySet::ProxySet(const std::vector<std::string>& member_endpoints) {
  for (const auto& endpoint : member_endpoints) proxies_.push_back(std::make_unique<TcpProxy>(port_of(endpoint)));
}

std::string ProxySet::endpoints_csv() const {
  std::string csv;
  for (const auto& proxy : proxies_) csv += (csv.empty() ? "" : ",") + proxy->endpoint();
  return csv;
}

void ProxySet::pause() {
  for (auto& proxy : proxies_) proxy->pause();
}
void ProxySet::resume() {
  for (auto& proxy : proxies_) proxy->resume();
}
void ProxySet::hold_replies() {
  for (auto& proxy : proxies_) proxy->hold_replies();
}
void ProxySet::resume_replies() {
  for (auto& proxy : proxies_) proxy->resume_replies();
}

}  // namespace etcdlock::testing
