// Small helpers for tests that talk to etcd through the internal client.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "etcd/client.h"
#include "keys/key_layout.h"

namespace etcdlock::testing {

inline detail::SteadyTime in(std::chrono::milliseconds timeout) { return std::chrono::steady_clock::now() + timeout; }

inline std::int64_t put(const detail::etcd::Client& client, const std::string& key, const std::string& value,
                        std::int64_t lease = 0) {
  etcdserverpb::PutRequest request;
  request.set_key(key);
  request.set_value(value);
  request.set_lease(lease);
  return client.put(request, in(std::chrono::seconds(5))).header().revision();
}

inline etcdserverpb::RangeResponse get(const detail::etcd::Client& client, const std::string& key) {
  etcdserverpb::RangeRequest request;
  request.set_key(key);
  return client.range(request, in(std::chrono::seconds(5)));
}

inline std::int64_t count_prefix(const detail::etcd::Client& client, const std::string& prefix) {
  etcdserverpb::RangeRequest request;
  request.set_key(prefix);
  request.set_range_end(detail::prefix_range_end(prefix));
  request.set_count_only(true);
  return client.range(request, in(std::chrono::seconds(5))).count();
}

// The keys under `prefix`, oldest first.
inline std::vector<std::string> keys_under(const detail::etcd::Client& client, const std::string& prefix) {
  etcdserverpb::RangeRequest request;
  request.set_key(prefix);
  request.set_range_end(detail::prefix_range_end(prefix));
  request.set_keys_only(true);
  request.set_sort_target(etcdserverpb::RangeRequest::CREATE);
  request.set_sort_order(etcdserverpb::RangeRequest::ASCEND);
  const auto response = client.range(request, in(std::chrono::seconds(5)));
  std::vector<std::string> keys;
  for (const auto& kv : response.kvs()) keys.push_back(kv.key());
  return keys;
}

inline std::int64_t erase(const detail::etcd::Client& client, const std::string& key) {
  etcdserverpb::DeleteRangeRequest request;
  request.set_key(key);
  return client.delete_range(request, in(std::chrono::seconds(5))).deleted();
}

// Polls `condition` until it holds or `timeout` passes.
template <class Condition>
bool eventually(Condition condition, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return condition();
}

}  // namespace etcdlock::testing
