// The manager's logger: a LogSink that is never empty and never throws out.
#pragma once

#include <initializer_list>
#include <string_view>

#include "etcdlock/log.h"

namespace etcdlock::detail {

class Logger {
 public:
  explicit Logger(LogSink sink) : sink_(sink ? std::move(sink) : stderr_log_sink()) {}

  void operator()(LogLevel level, std::string_view message,
                  std::initializer_list<LogField> fields = {}) const noexcept {
    try {
      sink_(level, message, std::span<const LogField>(fields.begin(), fields.size()));
    } catch (...) {
      // A failing sink must not take a lock operation down with it.
    }
  }

 private:
  LogSink sink_;
};

}  // namespace etcdlock::detail
