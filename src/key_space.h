// Where locks live in etcd, and which names and prefixes are valid.
//
// A lock named N under prefix P is the set of keys "P/N/<id>": the queue of its
// holder and waiters, ordered by create revision. This is the layout of etcd's
// own lock recipe, so all users of it exclude one another.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace etcdlock::detail {

inline constexpr std::size_t kMaxNameBytes = 1024;

// Throw Error(errc::invalid_key) naming the bad value.
void validate_name(std::string_view name);
void validate_prefix(std::string_view prefix);

// "<prefix>/<name>/": the directory of one lock's queue.
std::string queue_dir(std::string_view prefix, std::string_view name);

// A lease id as etcd's tools print it: lowercase hex.
std::string lease_hex(std::int64_t lease_id);

// The key of a lease's entry in a queue: the directory and the lease id in
// lowercase hex, as etcd's Go recipe writes it.
std::string queue_key(std::string_view dir, std::int64_t lease_id);

// True when `key` is an entry of the queue in `dir`, not one of a lock whose
// name extends this one ("a" against "a/b").
bool is_queue_entry(std::string_view dir, std::string_view key);

// The end of the range of every key starting with `prefix`, as etcd means it.
std::string prefix_range_end(std::string_view prefix);

// A value quoted for an error message: control bytes escaped, long values cut.
std::string quote_value(std::string_view value);

}  // namespace etcdlock::detail
