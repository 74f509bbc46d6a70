// How the etcdlock command prints lock information: an aligned table for
// people, or JSON for scripts.
#pragma once

#include <optional>
#include <ostream>
#include <vector>

#include "etcdlock/lock_info.h"

namespace etcdlock::cli {

void print_table(std::ostream& out, const std::vector<LockInfo>& rows);
void print_json(std::ostream& out, const std::vector<LockInfo>& rows);
void print_json(std::ostream& out, const std::optional<LockInfo>& row);

}  // namespace etcdlock::cli
