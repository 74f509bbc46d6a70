#include "certificates.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "etcd_cluster.h"

namespace etcdlock::testing {
namespace {

void openssl(const std::string& arguments) {
  std::string output;
  if (run_command("openssl " + arguments + " 2>&1", &output) != 0) {
    throw std::runtime_error("openssl " + arguments + " failed: " + output);
  }
}

void write_file(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

}  // namespace

std::string read_file(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

Certificates make_certificates(const std::string& directory) {
  Certificates c;
  c.directory = directory;
  auto path = [&](const std::string& name) { return directory + "/" + name; };
  c.ca = path("ca.crt");
  c.server_cert = path("server.crt");
  c.server_key = path("server.key");
  c.client_cert = path("client.crt");
  c.client_key = path("client.key");
  c.other_ca = path("other-ca.crt");
  const std::string quiet = " -days 2 -nodes -newkey rsa:2048";
  openssl("req -x509" + quiet + " -keyout " + path("ca.key") + " -out " + c.ca + " -subj /CN=etcdlock-test-ca");
  openssl("req -x509" + quiet + " -keyout " + path("other-ca.key") + " -out " + c.other_ca + " -subj /CN=other-ca");
  write_file(path("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n");
  write_file(path("client.ext"), "extendedKeyUsage=clientAuth\n");
  for (const std::string who : {"server", "client"}) {
    openssl("req -nodes -newkey rsa:2048 -keyout " + path(who + ".key") + " -out " + path(who + ".csr") +
            " -subj /CN=" + (who == "server" ? "localhost" : "client"));
    openssl("x509 -req -days 2 -in " + path(who + ".csr") + " -CA " + c.ca + " -CAkey " + path("ca.key") +
            " -CAcreateserial -out " + path(who + ".crt") + " -extfile " + path(who + ".ext"));
  }
  return c;
}

}  // namespace etcdlock::testing
