// TLS, client certificates and etcd authentication, against real etcd
// servers started with certificates this test makes.
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "certificates.h"
#include "child_process.h"
#include "etcd_cluster.h"
#include "etcdlock/etcdlock.h"
#include "expect_error.h"
#include "wire_helpers.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "etcdlock-certs-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

ManagerOptions base_options(const std::string& endpoint) {
  ManagerOptions options;
  options.endpoints = {endpoint};
  options.prefix = test_prefix();
  options.ttl = 5s;
  options.dial_timeout = 2s;
  options.log_sink = stderr_log_sink(LogLevel::error);
  return options;
}

void lock_and_unlock(const ManagerOptions& options) {
  LockManager manager(options);
  auto lock = manager.get_lock("secure");
  ASSERT_TRUE(lock->try_lock_for(10s));
  EXPECT_TRUE(lock->held());
  lock->unlock();
}

class Tls : public ::testing::Test {
 protected:
  TempDir dir_;
  Certificates certs_ = make_certificates(dir_.path());
  EtcdTls server_ = {certs_.server_cert, certs_.server_key, certs_.ca, false, "", ""};
  EtcdTls asks_for_client_certs_ = {certs_.server_cert, certs_.server_key, certs_.ca, true,
                                    certs_.client_cert, certs_.client_key};
};

TEST_F(Tls, VerifiedServerCertificate) {
  EtcdCluster etcd(1, server_);
  auto options = base_options("https://" + etcd.endpoints()[0]);
  options.tls = TlsOptions{certs_.ca, "", ""};
  lock_and_unlock(options);
  // The certificate names localhost too.
  options.endpoints = {"https://localhost:" + etcd.endpoints()[0].substr(etcd.endpoints()[0].rfind(':') + 1)};
  lock_and_unlock(options);
  // PEM text instead of a path.
  options.tls = TlsOptions{read_file(certs_.ca), "", ""};
  lock_and_unlock(options);
}

TEST_F(Tls, CertificateFromAnotherCaIsRefused) {
  EtcdCluster etcd(1, server_);
  auto options = base_options(etcd.endpoints()[0]);
  options.tls = TlsOptions{certs_.other_ca, "", ""};
  const auto started = std::chrono::steady_clock::now();
  expect_error(errc::unavailable, "TLS", [&] { LockManager manager(options); });
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
}

TEST_F(Tls, ClientCertificateAuthentication) {
  EtcdCluster etcd(1, asks_for_client_certs_);
  auto options = base_options(etcd.endpoints()[0]);
  options.tls = TlsOptions{certs_.ca, "", ""};
  expect_error(errc::unavailable, etcd.endpoints()[0], [&] { LockManager manager(options); });
  options.tls = TlsOptions{certs_.ca, certs_.client_cert, certs_.client_key};
  lock_and_unlock(options);
  // PEM text instead of paths.
  options.tls = TlsOptions{read_file(certs_.ca), read_file(certs_.client_cert), read_file(certs_.client_key)};
  lock_and_unlock(options);
}

TEST(TlsOptions, BadInputIsAClearError) {
  auto options = base_options("https://127.0.0.1:2379");
  expect_error(errc::invalid_argument, "needs TLS", [&] { LockManager manager(options); });
  options.tls = TlsOptions{"/no/such/ca.pem", "", ""};
  expect_error(errc::invalid_argument, "\"/no/such/ca.pem\"", [&] { LockManager manager(options); });
  options.tls = TlsOptions{"", "/some/cert.pem", ""};
  expect_error(errc::invalid_argument, "needs its key", [&] { LockManager manager(options); });
  options.endpoints = {"http://127.0.0.1:2379"};
  options.tls = TlsOptions{};
  expect_error(errc::invalid_argument, "plain http://", [&] { LockManager manager(options); });
}

class Auth : public ::testing::Test {
 protected:
  Auth() {
    const auto prefix = test_prefix();
    enable_auth_for_alice(etcd_, prefix,
                          {
                              "user add bob --new-user-password=bobpw",
                              "role add reader",
                              "role grant-permission reader read " + prefix + "/ --prefix=true",
                              "user grant-role bob reader",
                              "user add carol --new-user-password=carolpw",
                          });
  }

  ManagerOptions as(const std::string& user, const std::string& password) {
    auto options = base_options(etcd_.endpoints()[0]);
    options.username = user;
    options.password = password;
    return options;
  }

  EtcdCluster etcd_{1};
};

TEST_F(Auth, UserWithTheRightRoleLocks) { lock_and_unlock(as("alice", "alicepw")); }

TEST_F(Auth, WrongPasswordIsPermissionDenied) {
  expect_error(errc::permission_denied, "\"alice\"", [&] { LockManager manager(as("alice", "wrong")); });
}

TEST_F(Auth, NoCredentialsIsPermissionDenied) {
  // etcd 3.4 grants leases without a user; the lock itself is refused.
  LockManager manager(as("", ""));
  auto lock = manager.get_lock("secure");
  expect_error(errc::permission_denied, "user name is empty", [&] { lock->lock(); });
}

TEST_F(Auth, ReadOnlyUserGetsPermissionDeniedWithoutRetrying) {
  LockManager manager(as("bob", "bobpw"));
  auto lock = manager.get_lock("secure");
  const auto started = std::chrono::steady_clock::now();
  expect_error(errc::permission_denied, "permission denied", [&] { lock->lock(); });
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s) << "retried a refusal";
  EXPECT_FALSE(lock->held());
}

TEST_F(Auth, UserWhoCannotReadGetsPermissionDeniedNotAHang) {
  LockManager manager(as("carol", "carolpw"));
  auto lock = manager.get_lock("secure");
  const auto started = std::chrono::steady_clock::now();
  expect_error(errc::permission_denied, "permission denied", [&] { lock->lock(); });
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
}

TEST_F(Auth, TokenIsRenewedAfterEtcdRestarts) {
  LockManager manager(as("alice", "alicepw"));
  auto lock = manager.get_lock("secure");
  lock->lock();
  lock->unlock();
  etcd_.member(0).restart();  // simple tokens do not survive a restart
  ASSERT_TRUE(lock->try_lock_for(20s));
  lock->unlock();
}

TEST_F(Auth, CommandLineFlags) {
  const std::string cli = built_program("../tools/cli/etcdlock");
  ChildProcess run({cli, "--endpoints=" + etcd_.endpoints_csv(), "--prefix=" + test_prefix(), "--user=alice:alicepw",
                    "run", "job", "--", "echo", "ran"});
  EXPECT_EQ(run.read_line(), "ran");
  EXPECT_EQ(run.wait(), 0);
  ChildProcess denied(
      {cli, "--endpoints=" + etcd_.endpoints_csv(), "--prefix=" + test_prefix(), "--user=alice:nope", "list"});
  EXPECT_EQ(denied.wait(), 77);
}

}  // namespace
}  // namespace etcdlock::testing
