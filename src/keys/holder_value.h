// The value etcdlock stores in each of its queue keys: who holds or waits.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "etcdlock/lock_info.h"

namespace etcdlock::detail {

struct HolderValue {
  // A read-write lock's entries say which side they take; others, none.
  enum class Side { none, read, write };

  std::string owner;
  std::string hostname;
  long pid = 0;
  std::chrono::system_clock::time_point created_at;
  std::string version;
  // Where a releasing holder may leave this waiter a hand-over note; empty
  // when the manager has no inbox.
  std::string inbox;
  Side side = Side::none;
  // A semaphore's entries say its limit, so that users who disagree notice.
  std::int64_t limit = 0;
  // A multi-lock's entries name every name of its set, so that an operator
  // reading one name's queue learns what else the entry holds or waits for.
  std::vector<std::string> names{};
};

// A small JSON document.
std::string encode_holder_value(const HolderValue& value);
// nullopt for a value that is not etcdlock's (empty, as etcdctl and Go leave it, or foreign).
std::optional<HolderValue> decode_holder_value(std::string_view text);

// What an operator is told of a queue entry: its owner and creation time from
// its value ("unknown" and the epoch for values that are not etcdlock's).
QueueEntryInfo describe_entry(const std::string& key, std::string_view value, std::int64_t lease,
                              std::int64_t create_revision, bool holds);

// "<hostname>:<pid>", the default owner.
std::string default_owner();
std::string this_hostname();

}  // namespace etcdlock::detail
