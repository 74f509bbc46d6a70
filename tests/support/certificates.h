// Certificates for TLS tests, made with openssl in a temporary directory: a
// CA, a server certificate for 127.0.0.1 and localhost, a client certificate,
// and a second, unrelated CA.
#pragma once

#include <string>

namespace etcdlock::testing {

struct Certificates {
  std::string directory;
  std::string ca;  // paths of PEM files
  std::string server_cert, server_key;
  std::string client_cert, client_key;
  std::string other_ca;  // signed nothing here
};

// Throws std::runtime_error if openssl fails. Removes nothing: the caller
// owns `directory`.
Certificates make_certificates(const std::string& directory);

std::string read_file(const std::string& path);

}  // namespace etcdlock::testing
