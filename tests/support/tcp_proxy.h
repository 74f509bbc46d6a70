// A TCP proxy on loopback that can be paused: while paused it moves no bytes
// in either direction and keeps connections open, as a network partition
// between one client and etcd would.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace etcdlock::testing {

// The port of a "host:port" endpoint.
int port_of(std::string_view endpoint);

class TcpProxy {
 public:
  explicit TcpProxy(int target_port);
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }
  // Once it returns, no byte moves until resume().
  void pause();
  void resume() { paused_ = false; }
  // Forwards requests to etcd but holds back its replies until resume_replies(),
  // so that a request can commit while its reply is lost. Once it returns,
  // nothing more reaches the client until resume_replies().
  void hold_replies();
  void resume_replies() { replies_held_ = false; }
  // Closes every connection and refuses new ones until restore(): the client
  // sees its member go away.
  void cut();
  void restore() { cut_ = false; }

 private:
  void accept_loop();
  void pump(int from, int to, bool replies);

  int target_port_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> paused_{false};
  std::atomic<bool> replies_held_{false};
  // Taken by a pump from its last look at paused_ and replies_held_ until it
  // has forwarded what it read, and by pause() and hold_replies().
  std::mutex gate_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> cut_{false};
  std::mutex mu_;
  std::vector<int> sockets_;        // guarded by mu_
  std::vector<std::thread> pumps_;  // guarded by mu_
  std::thread acceptor_;
};

// A proxy to each of a cluster's members: a client given endpoints_csv()
// reaches every member through its own proxy, so a fault of the set cuts
// that client off from the whole cluster, and no one else.
class ProxySet {
 public:
  explicit ProxySet(const std::vector<std::string>& member_endpoints);

  std::string endpoints_csv() const;
  void pause();
  void resume();
  void hold_replies();
  void resume_replies();

 private:
  std::vector<std::unique_ptr<TcpProxy>> proxies_;
};

}  // namespace etcdlock::testing
