// The library's version, also stored in the value of every lock key it writes.
#pragma once

namespace etcdlock {
inline constexpr const char* kVersion = "0.1.0";
}  // namespace etcdlock
