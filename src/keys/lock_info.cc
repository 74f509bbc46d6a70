#include "etcdlock/lock_info.h"

#include <cstdio>

namespace etcdlock {

std::string lease_hex(std::int64_t lease_id) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%llx", static_cast<unsigned long long>(lease_id));
  return hex;
}

}  // namespace etcdlock
