#include "etcd/lost_replies.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <vector>

#include "base/mutex.h"
#include "base/text.h"

namespace etcdlock::detail::etcd {
namespace {

struct Armed {
  std::string site;
  std::string key_prefix;
  int count = 0;
};

struct State {
  std::atomic<int> armed{0};  // entries in `sites`: the fast path reads only this
  Mutex mu;
  std::vector<Armed> sites ETCDLOCK_GUARDED_BY(mu);
  std::map<std::string, int, std::less<>> dropped ETCDLOCK_GUARDED_BY(mu);
};

State& state() {
  static State instance;
  return instance;
}

bool names_key(const pb::TxnRequest& request, std::string_view prefix) {
  const auto op_names = [&](const pb::RequestOp& op) {
    if (op.has_request_put()) return op.request_put().key().starts_with(prefix);
    if (op.has_request_delete_range()) return op.request_delete_range().key().starts_with(prefix);
    if (op.has_request_range()) return op.request_range().key().starts_with(prefix);
    if (op.has_request_txn()) return names_key(op.request_txn(), prefix);
    return false;
  };
  return std::any_of(request.compare().begin(), request.compare().end(),
                     [&](const pb::Compare& compare) { return compare.key().starts_with(prefix); }) ||
         std::any_of(request.success().begin(), request.success().end(), op_names) ||
         std::any_of(request.failure().begin(), request.failure().end(), op_names);
}

template <class Matches>
bool take_if(std::string_view site, Matches matches) {
  State& s = state();
  if (s.armed.load(std::memory_order_relaxed) == 0) return false;
  MutexLock lock(s.mu);
  const auto found = std::find_if(s.sites.begin(), s.sites.end(), [&](const Armed& armed) {
    return armed.site == site && (armed.key_prefix.empty() || matches(armed.key_prefix));
  });
  if (found == s.sites.end()) return false;
  if (--found->count == 0) {
    s.sites.erase(found);
    s.armed.fetch_sub(1, std::memory_order_relaxed);
  }
  ++s.dropped[std::string(site)];
  return true;
}

}  // namespace

void LostReplies::arm(std::string_view site, std::string_view key_prefix, int count) {
  if (count <= 0) return;
  State& s = state();
  MutexLock lock(s.mu);
  s.sites.push_back({std::string(site), std::string(key_prefix), count});
  s.armed.fetch_add(1, std::memory_order_relaxed);
}

void LostReplies::disarm() {
  State& s = state();
  MutexLock lock(s.mu);
  s.armed.fetch_sub(static_cast<int>(s.sites.size()), std::memory_order_relaxed);
  s.sites.clear();
}

int LostReplies::dropped(std::string_view site) {
  State& s = state();
  MutexLock lock(s.mu);
  const auto found = s.dropped.find(site);
  return found == s.dropped.end() ? 0 : found->second;
}

bool LostReplies::take(std::string_view site, const pb::TxnRequest& request) {
  return take_if(site, [&](const std::string& prefix) { return names_key(request, prefix); });
}

bool LostReplies::take(std::string_view site, std::int64_t lease_id) {
  const auto hex = hex_id(lease_id);
  return take_if(site, [&](const std::string& prefix) { return prefix == hex; });
}

}  // namespace etcdlock::detail::etcd
