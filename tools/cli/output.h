// How the etcdlock command prints lock information: an aligned table for
// people, or JSON for scripts.
#pragma once

#include <chrono>
#include <optional>
#include <ostream>
#include <vector>

#include "etcdlock/lock_event.h"
#include "etcdlock/lock_info.h"

namespace etcdlock::cli {

void print_table(std::ostream& out, const std::vector<LockInfo>& rows);
// One line per queue entry: each lock's holders, then its waiters in order,
// with when each joined the queue and how long ago (`now`).
void print_status(std::ostream& out, const std::vector<LockInfo>& rows, std::chrono::system_clock::time_point now);
void print_json(std::ostream& out, const std::vector<LockInfo>& rows);
void print_json(std::ostream& out, const std::optional<LockInfo>& row);
// One line for an event that was reported `at`: text, or a JSON object.
void print_event(std::ostream& out, const LockEvent& event, bool json, std::chrono::system_clock::time_point at);

}  // namespace etcdlock::cli
