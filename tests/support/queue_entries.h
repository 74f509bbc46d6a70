// queue_entries: a lock's queue as etcd has it, for tests that look at who
// is where in it.
#pragma once

#include <string>
#include <vector>

#include "wire_helpers.h"

namespace etcdlock::testing {

// The entries under `dir` ("<prefix>/<name>/"), oldest first, with their
// values; inbox keys, which hold a NUL, are no entries.
inline std::vector<mvccpb::KeyValue> queue_entries(const detail::etcd::Client& client, const std::string& dir) {
  etcdserverpb::RangeRequest request;
  request.set_key(dir);
  request.set_range_end(detail::prefix_range_end(dir));
  request.set_sort_target(etcdserverpb::RangeRequest::CREATE);
  request.set_sort_order(etcdserverpb::RangeRequest::ASCEND);
  const auto found = client.range(request, in(std::chrono::seconds(5)));
  std::vector<mvccpb::KeyValue> entries;
  for (const auto& kv : found.kvs()) {
    if (kv.key().find('\0') == std::string::npos) entries.push_back(kv);
  }
  return entries;
}

}  // namespace etcdlock::testing
