// Real etcd servers for tests: single members and 3-member clusters on free
// loopback ports, with temporary data directories and fast election timings.
//
// Every process is stopped by its PID and its data removed when the object
// is destroyed, and the kernel kills it (PR_SET_PDEATHSIG) if the test process
// dies first, so an aborted test leaves no etcd behind. Create clusters from
// the main thread: the kernel ties that guard to the thread that forked.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace etcdlock::testing {

// TLS on the client port, and optionally client-certificate authentication.
struct EtcdTls {
  std::string cert, key, ca;  // paths of PEM files
  bool client_cert_auth = false;
  // The client's certificate and key, for the harness's own readiness checks.
  std::string client_cert, client_key;
};

class EtcdMember {
 public:
  EtcdMember(std::string name, int client_port, int peer_port, std::string data_dir, std::string initial_cluster,
             std::string cluster_token, std::optional<EtcdTls> tls = std::nullopt);
  ~EtcdMember();
  EtcdMember(const EtcdMember&) = delete;
  EtcdMember& operator=(const EtcdMember&) = delete;

  void start();
  void kill();     // SIGKILL and reap
  void freeze();   // SIGSTOP
  void thaw();     // SIGCONT
  void restart();  // kill if running, then start on the same data and ports
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }
  std::string endpoint() const;  // "127.0.0.1:PORT"
  // Where the member writes what it logs (errors only): across restarts.
  std::string log_path() const { return data_dir_ + ".log"; }
  // etcd made its data directory: it binds its ports first, so a member that
  // has one is the server on them, not another test's etcd that took a port
  // free_port() found free.
  bool has_data() const;

 private:
  std::string name_;
  int client_port_;
  int peer_port_;
  std::string data_dir_;
  std::string initial_cluster_;
  std::string cluster_token_;
  std::optional<EtcdTls> tls_;
  pid_t pid_ = -1;
  bool frozen_ = false;
};

class EtcdCluster {
 public:
  // Starts `members` members and waits until every one serves requests.
  explicit EtcdCluster(std::size_t members = 1, std::optional<EtcdTls> tls = std::nullopt);
  ~EtcdCluster();
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  std::vector<std::string> endpoints() const;
  std::string endpoints_csv() const;
  std::size_t size() const { return members_.size(); }
  EtcdMember& member(std::size_t index) { return *members_.at(index); }
  // The index of the current leader, asked of the members with etcdctl.
  std::size_t leader_index() const;
  // Waits until the member at `index` answers a linearizable read.
  void wait_ready(std::size_t index, std::chrono::milliseconds timeout = std::chrono::seconds(15)) const;

 private:
  // The tail of each member's log, on stderr.
  void print_member_logs() const;

  std::string root_;
  std::optional<EtcdTls> tls_;
  std::vector<std::unique_ptr<EtcdMember>> members_;
};

// A free TCP port on 127.0.0.1.
int free_port();

// A key prefix that no other test uses: "/t/<suite>.<test>".
std::string test_prefix();

// Runs a shell command; returns its exit status and fills `output` with its stdout.
int run_command(const std::string& command, std::string* output = nullptr);

// Turns authentication on in `etcd`: user root (password "rootpw") and user
// alice ("alicepw"), whose role "locker" may read and write under `prefix`;
// `more` etcdctl commands run before "auth enable". A command that fails is
// a test failure.
void enable_auth_for_alice(const EtcdCluster& etcd, const std::string& prefix,
                           const std::vector<std::string>& more = {});

}  // namespace etcdlock::testing
