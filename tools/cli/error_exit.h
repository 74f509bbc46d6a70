// The exit status for an etcdlock::Error.
#pragma once

#include "etcdlock/error.h"
#include "exit_codes.h"

namespace etcdlock::cli {

inline int exit_status_for(const Error& error) {
  switch (error.value()) {
    case errc::invalid_key:
    case errc::invalid_argument:
      return kExitUsage;
    case errc::permission_denied:
      return kExitPermission;
    case errc::lock_timeout:
      return kExitTimeout;
    case errc::lock_expired:
      return kExitLockLost;
    default:
      return kExitUnavailable;
  }
}

}  // namespace etcdlock::cli
