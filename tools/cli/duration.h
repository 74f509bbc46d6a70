// Durations on the command line as Go's time.ParseDuration reads them, and so
// etcdctl's flags: "250ms", "1.5s", "2m", "1h", compounds such as "1m30s" or
// "1h2m3.5s" (units h, m, s, ms, us, ns); or a plain number of seconds.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace etcdlock::cli {

// Throws std::invalid_argument naming the value.
std::chrono::milliseconds parse_duration(std::string_view text);

}  // namespace etcdlock::cli
