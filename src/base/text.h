// Text in error messages and logs: values quoted so that a bad one can be seen
// for what it is, and never breaks a terminal or a log line.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace etcdlock::detail {

bool is_valid_utf8(std::string_view text);

// A value quoted for a message: control bytes escaped, long values cut.
std::string quote_value(std::string_view value);

// An id (a lease, a manager) in lowercase hex, as etcd and etcdctl print it.
std::string hex_id(std::int64_t id);

}  // namespace etcdlock::detail
