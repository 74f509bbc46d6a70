#include "etcdlock/log.h"

#include <cstdio>
#include <ctime>

namespace etcdlock {

std::string_view to_string(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::debug:
      return "debug";
    case LogLevel::info:
      return "info";
    case LogLevel::warning:
      return "warning";
    case LogLevel::error:
      return "error";
  }
  return "unknown";
}

LogSink stderr_log_sink(LogLevel minimum) {
  return [minimum](LogLevel level, std::string_view message, std::span<const LogField> fields) {
    if (level < minimum) return;
    std::string line = "etcdlock " + std::string(to_string(level)) + ": " + std::string(message);
    for (const auto& [key, value] : fields) line += " " + std::string(key) + "=" + value;
    line += '\n';
    // One write per line, so lines of concurrent threads do not interleave.
    std::fwrite(line.data(), 1, line.size(), stderr);
  };
}

}  // namespace etcdlock
