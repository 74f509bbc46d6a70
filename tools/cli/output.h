// How the etcdlock command prints lock information: an aligned table for
// people, or JSON for scripts.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "etcdlock/deadlock.h"
#include "etcdlock/lock_event.h"
#include "etcdlock/lock_info.h"

namespace etcdlock::cli {

// JSON text in one line; bytes that are not UTF-8 (keys of other clients)
// become U+FFFD.
std::string json_text(const nlohmann::json& value);
// `text` with its control characters escaped (\n, \t, \xNN), so that a name
// cannot break or forge a line of a table.
std::string printable(std::string_view text);

void print_table(std::ostream& out, const std::vector<LockInfo>& rows);
// One line per queue entry: each lock's holders, then its waiters in order,
// with when each joined the queue and how long ago (`now`).
void print_status(std::ostream& out, const std::vector<LockInfo>& rows, std::chrono::system_clock::time_point now);
void print_json(std::ostream& out, const std::vector<LockInfo>& rows);
// One "deadlock:" line per cycle: each member's owner and lease, the name it
// holds (or waits ahead in) and the name it waits for, in the cycle's order.
void print_deadlocks(std::ostream& out, const std::vector<Deadlock>& deadlocks);
// `status --json`: {"locks": [the rows, as list --json], "deadlocks": [...]}.
void print_status_json(std::ostream& out, const std::vector<LockInfo>& rows, const std::vector<Deadlock>& deadlocks);
void print_json(std::ostream& out, const std::optional<LockInfo>& row);
// One line for an event that was reported `at`: text, or a JSON object.
void print_event(std::ostream& out, const LockEvent& event, bool json, std::chrono::system_clock::time_point at);

}  // namespace etcdlock::cli
