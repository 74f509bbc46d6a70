// Durations on the command line: "250ms", "1.5s", "2m", "1h", or a plain
// number of seconds, as etcdctl's flags take them.
#pragma once

#include <chrono>
#include <string_view>

namespace etcdlock::cli {

// Throws std::invalid_argument naming the value.
std::chrono::milliseconds parse_duration(std::string_view text);

}  // namespace etcdlock::cli
