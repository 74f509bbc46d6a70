// Where etcdlock's log lines go: a sink the application provides, or stderr.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace etcdlock {

enum class LogLevel { debug, info, warning, error };

std::string_view to_string(LogLevel level) noexcept;

// One key/value of a log line: {"name", "jobs"}, {"lease", "694d7c5c8a1f2b04"}.
using LogField = std::pair<std::string_view, std::string>;

// Receives every log line. Called from etcdlock's threads and from the threads
// that call the API, possibly at once: it must be thread-safe, and it must not
// call back into etcdlock.
using LogSink = std::function<void(LogLevel level, std::string_view message, std::span<const LogField> fields)>;

// The default sink: warnings and errors to stderr, one line each.
LogSink stderr_log_sink(LogLevel minimum = LogLevel::warning);

}  // namespace etcdlock
