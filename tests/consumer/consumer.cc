// A program that uses etcdlock as a user's project would: only the public
// headers and the etcdlock::etcdlock target. No etcd is needed: it checks that
// the library links and validates its options.
#include <etcdlock/etcdlock.h>

#include <iostream>
#include <mutex>

#include "every_public_function.h"

int main() {
  etcdlock_consumer::refer_to_every_public_function();
  if (etcdlock::to_string(etcdlock::SessionState::suspect) != "suspect" || etcdlock::lease_hex(255) != "ff") {
    std::cerr << "unexpected results from the public free functions\n";
    return 1;
  }
  static_assert(std::is_error_code_enum_v<etcdlock::errc>);
  try {
    etcdlock::LockManager manager({.endpoints = {"127.0.0.1:2379"}, .ttl = std::chrono::seconds(0)});
  } catch (const etcdlock::Error& error) {
    if (error.code() == etcdlock::errc::invalid_argument) {
      std::cout << "etcdlock " << etcdlock::kVersion << " links and rejects a TTL of 0\n";
      return 0;
    }
    std::cerr << "unexpected error: " << error.what() << "\n";
  }
  return 1;
}
