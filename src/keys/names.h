// Which lock names and prefixes etcdlock accepts.
#pragma once

#include <cstddef>
#include <string_view>

namespace etcdlock::detail {

inline constexpr std::size_t kMaxNameBytes = 1024;

// Throw Error(errc::invalid_key) naming the bad value.
void validate_name(std::string_view name);
void validate_prefix(std::string_view prefix);
// The start of lock names, for listing and watching: may be empty or end
// with '/'.
void validate_name_prefix(std::string_view name_prefix);

}  // namespace etcdlock::detail
