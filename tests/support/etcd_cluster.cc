#include "etcd_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string_view>
#include <thread>

#include "etcd/client.h"

namespace etcdlock::testing {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kDirectoryPrefix = "etcdlock-test-";

// Where members keep their data. etcd preallocates 64 MB of log per member
// and syncs every write: on tmpfs that costs neither disk space nor disk
// time, and a test run cannot fail for a disk that something else filled.
// ETCDLOCK_TEST_TMPDIR chooses; otherwise /dev/shm when it has room.
fs::path data_parent() {
  if (const char* chosen = std::getenv("ETCDLOCK_TEST_TMPDIR"); chosen != nullptr && *chosen != '\0') return chosen;
  std::error_code ec;
  const auto shm = fs::space("/dev/shm", ec);
  if (!ec && shm.available >= (std::uintmax_t{4} << 30) && access("/dev/shm", W_OK) == 0) return "/dev/shm";
  return fs::temp_directory_path();
}

// A directory's name carries the pid of the process that made it, so that a
// directory whose process died without its destructors (killed at a
// timeout, or a death test's child that ends with _Exit) is removed by the
// next cluster made or destroyed on the machine. A pid alone can mislead
// where /dev/shm or /tmp is shared with another pid namespace, so each
// process also holds a lock on a file of its own for as long as it lives:
// the kernel drops it when the process ends, in every namespace.
fs::path process_lock_path(const fs::path& parent, pid_t pid) {
  return parent / (std::string(kDirectoryPrefix) + std::to_string(pid) + ".lock");
}

void hold_process_lock(const fs::path& parent) {
  static std::mutex mu;
  static std::set<std::string> held;  // parents whose lock this process holds
  std::lock_guard guard(mu);
  if (held.contains(parent.string())) return;
  const int fd = ::open(process_lock_path(parent, getpid()).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0 || ::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    throw std::runtime_error("cannot lock " + process_lock_path(parent, getpid()).string() + ": " +
                             std::strerror(errno));
  }
  held.insert(parent.string());  // the descriptor stays open until the process ends
}

// Whether the process `pid` that made a directory in `parent` has ended.
bool has_ended(const fs::path& parent, pid_t pid) {
  if (::kill(pid, 0) == 0 || errno != ESRCH) return false;
  const int fd = ::open(process_lock_path(parent, pid).c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return true;  // a process that made a directory locked first: this one is gone
  const bool ended = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
  if (ended) ::unlink(process_lock_path(parent, pid).c_str());
  ::close(fd);
  return ended;
}

// Removes what processes that have ended left in `parent`: their data
// directories ("etcdlock-test-<pid>-XXXXXX") and lock files
// ("etcdlock-test-<pid>.lock"; has_ended() unlinks those).
void remove_directories_of_ended_processes(const fs::path& parent) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(parent, ec)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(kDirectoryPrefix)) continue;
    const std::string rest = name.substr(kDirectoryPrefix.size());
    const bool is_directory = entry.is_directory(ec);
    const auto end = rest.find(is_directory ? '-' : '.');
    if (end == std::string::npos || end == 0 || (!is_directory && rest.substr(end) != ".lock")) continue;
    pid_t owner = 0;
    try {
      owner = static_cast<pid_t>(std::stol(rest.substr(0, end)));
    } catch (const std::exception&) {
      continue;
    }
    if (owner <= 0 || owner == getpid() || !has_ended(parent, owner)) continue;
    std::error_code ignored;
    if (is_directory) fs::remove_all(entry.path(), ignored);
  }
}

std::string make_temp_dir() {
  const fs::path parent = data_parent();
  hold_process_lock(parent);
  remove_directories_of_ended_processes(parent);
  std::string pattern = (parent / (std::string(kDirectoryPrefix) + std::to_string(getpid()) + "-XXXXXX")).string();
  if (mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("mkdtemp(" + pattern + ") failed: " + std::strerror(errno));
  }
  if (const auto* test = ::testing::UnitTest::GetInstance()->current_test_info()) {
    std::ofstream(pattern + "/owner") << test->test_suite_name() << "." << test->name() << "\n";
  }
  return pattern;
}

std::string url(int port, bool tls = false) {
  return (tls ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(port);
}

// SIGSTOP takes effect when each thread of the process next enters the
// kernel; a test that freezes a member must not race a request against it.
// Waits (up to 2 s) until /proc shows every thread of `pid` stopped.
void wait_until_stopped(pid_t pid) {
  const fs::path tasks = "/proc/" + std::to_string(pid) + "/task";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (std::chrono::steady_clock::now() < deadline) {
    bool all_stopped = true;
    std::error_code ec;
    for (const auto& task : fs::directory_iterator(tasks, ec)) {
      std::ifstream stat(task.path() / "stat");
      std::string line;
      std::getline(stat, line);
      // "<tid> (<comm>) <state> ...": the state follows the last ')'.
      const auto close = line.rfind(')');
      if (close == std::string::npos || close + 2 >= line.size()) continue;
      const char state = line[close + 2];
      if (state != 'T' && state != 't') all_stopped = false;
    }
    if (all_stopped && !ec) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    if (fd >= 0) close(fd);
    throw std::runtime_error("no free port");
  }
  close(fd);
  return ntohs(address.sin_port);
}

std::string test_prefix() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "no-test";
  for (char& c : name) {
    if (c == '/') c = '_';
  }
  return "/t/" + name;
}

void enable_auth_for_alice(const EtcdCluster& etcd, const std::string& prefix, const std::vector<std::string>& more) {
  std::vector<std::string> commands{
      "user add root --new-user-password=rootpw",
      "user grant-role root root",
      "user add alice --new-user-password=alicepw",
      "role add locker",
      "role grant-permission locker readwrite " + prefix + "/ --prefix=true",
      "user grant-role alice locker",
  };
  commands.insert(commands.end(), more.begin(), more.end());
  commands.emplace_back("auth enable");
  for (const std::string& command : commands) {
    // etcd answers "request timed out" when a write outlasts its request
    // timeout: a user add hashes the password, seconds at SlowAuth's bcrypt
    // cost on a loaded machine (SlowAuth tests failed so in their setup on
    // 2026-12-06 and 12-07). The write may have been applied all the same, so
    // a retry that finds the user or role there counts as done.
    std::string output;
    int status = -1;
    for (int attempt = 0; attempt < 3 && status != 0; ++attempt) {
      output.clear();
      status = run_command("etcdctl --endpoints=" + etcd.endpoints_csv() + " " + command + " 2>&1", &output);
      if (status != 0 && attempt > 0 && output.find("already exists") != std::string::npos) status = 0;
    }
    EXPECT_EQ(status, 0) << command << ": " << output;
  }
}

int run_command(const std::string& command, std::string* output) {
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return -1;
  char buffer[4096];
  std::size_t read;
  while ((read = fread(buffer, 1, sizeof buffer, pipe)) > 0) {
    if (output) output->append(buffer, read);
  }
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

EtcdMember::EtcdMember(std::string name, int client_port, int peer_port, std::string data_dir,
                       std::string initial_cluster, std::string cluster_token, std::optional<EtcdTls> tls)
    : name_(std::move(name)),
      client_port_(client_port),
      peer_port_(peer_port),
      data_dir_(std::move(data_dir)),
      initial_cluster_(std::move(initial_cluster)),
      cluster_token_(std::move(cluster_token)),
      tls_(std::move(tls)) {}

EtcdMember::~EtcdMember() { kill(); }

std::string EtcdMember::endpoint() const { return "127.0.0.1:" + std::to_string(client_port_); }

void EtcdMember::start() {
  if (running()) return;
  // Everything the child needs is built before fork(): after it, only
  // async-signal-safe calls are allowed in a threaded process.
  std::vector<std::string> args = {
      "etcd",
      "--name",
      name_,
      "--data-dir",
      data_dir_,
      "--listen-client-urls",
      url(client_port_, tls_.has_value()),
      "--advertise-client-urls",
      url(client_port_, tls_.has_value()),
      "--listen-peer-urls",
      url(peer_port_),
      "--initial-advertise-peer-urls",
      url(peer_port_),
      "--initial-cluster",
      initial_cluster_,
      "--initial-cluster-token",
      cluster_token_,
      "--initial-cluster-state",
      "new",
      "--heartbeat-interval",
      "10",
      "--election-timeout",
      "100",
      "--logger",
      "zap",
      "--log-level",
      "error",
  };
  if (tls_) {
    for (const std::string& arg : {std::string("--cert-file"), tls_->cert, std::string("--key-file"), tls_->key}) {
      args.push_back(arg);
    }
    // etcd 3.4 demands client certificates whenever it has a trusted CA file,
    // --client-cert-auth or not.
    if (tls_->client_cert_auth) {
      for (const std::string& arg : {std::string("--trusted-ca-file"), tls_->ca, std::string("--client-cert-auth")}) {
        args.push_back(arg);
      }
    }
  }
  if (const char* no_fsync = std::getenv("ETCDLOCK_TEST_NO_FSYNC"); no_fsync && std::string(no_fsync) == "1") {
    args.emplace_back("--unsafe-no-fsync");
  }
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  const std::string log_path = this->log_path();
  const pid_t parent = getpid();

  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the test died before the guard was set
    const int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log >= 0) {
      dup2(log, STDOUT_FILENO);
      dup2(log, STDERR_FILENO);
    }
    execvp("etcd", argv.data());
    _exit(127);
  }
  pid_ = pid;
  frozen_ = false;
}

void EtcdMember::kill() {
  if (!running()) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  frozen_ = false;
}

void EtcdMember::freeze() {
  if (running()) {
    ::kill(pid_, SIGSTOP);
    wait_until_stopped(pid_);
  }
  frozen_ = true;
}

void EtcdMember::thaw() {
  if (running()) ::kill(pid_, SIGCONT);
  frozen_ = false;
}

void EtcdMember::restart() {
  kill();
  start();
}

EtcdCluster::EtcdCluster(std::size_t members, std::optional<EtcdTls> tls)
    : root_(make_temp_dir()), tls_(std::move(tls)) {
  static std::atomic<int> clusters{0};
  // A port that free_port() found free may be taken before etcd binds it
  // (by another test's etcd, or as the local port of any connection), and
  // then a member never becomes ready: start again on other ports, in fresh
  // data directories, a few times before giving up.
  constexpr int kAttempts = 3;
  for (int attempt = 1;; ++attempt) {
    const std::string token = "etcdlock-" + std::to_string(getpid()) + "-" + std::to_string(clusters++);
    const std::string dir = root_ + "/" + std::to_string(attempt);
    fs::create_directories(dir);  // etcd makes its data directory, not the log's
    std::vector<std::pair<int, int>> ports;
    std::string initial_cluster;
    for (std::size_t i = 0; i < members; ++i) {
      ports.emplace_back(free_port(), free_port());
      if (!initial_cluster.empty()) initial_cluster += ",";
      initial_cluster += "m" + std::to_string(i) + "=" + url(ports.back().second);
    }
    for (std::size_t i = 0; i < members; ++i) {
      const std::string name = "m" + std::to_string(i);
      members_.push_back(std::make_unique<EtcdMember>(name, ports[i].first, ports[i].second, dir + "/" + name,
                                                      initial_cluster, token, tls_));
    }
    try {
      for (auto& member : members_) member->start();
      for (std::size_t i = 0; i < members; ++i) wait_ready(i);
      return;
    } catch (const std::exception& error) {
      members_.clear();  // stops every member started
      std::error_code ignored;
      fs::remove_all(dir, ignored);
      if (attempt == kAttempts) {
        fs::remove_all(root_, ignored);
        throw;
      }
      std::cerr << "etcd did not start (" << error.what() << "); starting again on other ports\n";
    }
  }
}

EtcdCluster::~EtcdCluster() {
  // A failed test's members may say why (a lost leader, a slow disk): their
  // logs go with the data directories below, so they are shown first.
  if (::testing::Test::HasFailure()) print_member_logs();
  members_.clear();  // each member kills its process
  std::error_code ignored;
  fs::remove_all(root_, ignored);
  // Also what a death test's child, which shares this fixture's test but not
  // its destructor, left behind.
  remove_directories_of_ended_processes(fs::path(root_).parent_path());
}

void EtcdCluster::print_member_logs() const {
  constexpr std::size_t kTailLines = 40;
  for (const auto& member : members_) {
    std::ifstream log(member->log_path());
    std::vector<std::string> lines;
    for (std::string line; std::getline(log, line);) lines.push_back(std::move(line));
    const std::size_t from = lines.size() > kTailLines ? lines.size() - kTailLines : 0;
    std::cerr << "--- etcd member " << member->name() << " (" << member->endpoint() << "): the last "
              << lines.size() - from << " of " << lines.size() << " lines it logged\n";
    for (std::size_t i = from; i < lines.size(); ++i) std::cerr << lines[i] << '\n';
  }
}

std::vector<std::string> EtcdCluster::endpoints() const {
  std::vector<std::string> result;
  for (const auto& member : members_) result.push_back(member->endpoint());
  return result;
}

std::string EtcdCluster::endpoints_csv() const {
  std::string result;
  for (const auto& endpoint : endpoints()) result += (result.empty() ? "" : ",") + endpoint;
  return result;
}

bool EtcdMember::has_data() const { return fs::exists(fs::path(data_dir_) / "member"); }

void EtcdCluster::wait_ready(std::size_t index, std::chrono::milliseconds timeout) const {
  detail::etcd::Client::Credentials credentials;
  if (tls_) credentials.tls = TlsOptions{tls_->ca, tls_->client_cert, tls_->client_key};
  detail::etcd::Client client({members_.at(index)->endpoint()}, std::chrono::milliseconds(500), credentials);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    try {
      etcdserverpb::RangeRequest request;
      request.set_key("/ready");
      client.range(request, std::chrono::steady_clock::now() + std::chrono::milliseconds(500));
      // Answered, but maybe by another test's etcd on a port that both took:
      // ours then fails to bind and exits without its data directory.
      if (!members_.at(index)->has_data()) throw std::runtime_error("answered by a server with no data of this member");
      return;
    } catch (const std::exception& error) {
      if (std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error("etcd member " + members_.at(index)->name() +
                                 " did not become ready: " + error.what());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

std::size_t EtcdCluster::leader_index() const {
  for (std::size_t i = 0; i < members_.size(); ++i) {
    if (!members_[i]->running()) continue;
    std::string output;
    run_command("etcdctl --endpoints=" + members_[i]->endpoint() +
                    " --command-timeout=1s endpoint status -w fields 2>/dev/null",
                &output);
    // "MemberID" and "Leader" lines; the member leads when they match.
    auto field = [&](const std::string& name) {
      const auto at = output.find("\"" + name + "\" : ");
      if (at == std::string::npos) return std::string();
      const auto start = at + name.size() + 5;
      return output.substr(start, output.find('\n', start) - start);
    };
    if (!field("MemberID").empty() && field("MemberID") == field("Leader")) return i;
  }
  throw std::runtime_error("no leader found");
}

}  // namespace etcdlock::testing
