#include "admin.h"

#include <algorithm>
#include <map>

#include "holder_value.h"
#include "key_layout.h"
#include "names.h"
#include "text.h"
#include "queue_requests.h"

namespace etcdlock::detail {
namespace {

namespace pb = ::etcdserverpb;

// Entries oldest first, with their values (queue_range reads keys only).
pb::RangeRequest by_creation(const QueueDir& keys) {
  auto range = queue_range(keys);
  range.set_keys_only(false);
  return range;
}

}  // namespace

SteadyTime Admin::deadline() const { return client_.command_deadline(); }

void Admin::describe(LockInfo& row, const std::string& value, std::map<std::int64_t, std::int64_t>& ttls) const {
  if (const auto holder = decode_holder_value(value)) {
    row.owner = holder->owner;
    row.created_at = holder->created_at;
  } else {
    row.owner = "unknown";
  }
  auto [ttl, unknown] = ttls.try_emplace(row.lease_id, 0);
  if (unknown) ttl->second = client_.lease_time_to_live(row.lease_id, deadline()).ttl();
  row.ttl_remaining = std::chrono::seconds(ttl->second);
}

std::optional<LockInfo> Admin::info(std::string_view name) const {
  validate_name(name);
  const auto dir = queue_dir(prefix_, name);
  const auto queue = client_.range(by_creation({dir, prefix_range_end(dir)}), deadline());
  std::optional<LockInfo> row;
  for (const auto& kv : queue.kvs()) {
    if (!is_queue_entry(dir, kv.key())) continue;
    if (!row) {
      row = LockInfo{std::string(name), kv.key(), "", kv.lease(), kv.create_revision(), {}, {}, 0};
      std::map<std::int64_t, std::int64_t> ttls;
      describe(*row, kv.value(), ttls);
    } else {
      ++row->waiters;
    }
  }
  return row;
}

std::vector<LockInfo> Admin::list(std::string_view name_prefix) const {
  const std::string root = prefix_ + "/";
  const std::string from = root + std::string(name_prefix);
  const auto everything = client_.range(by_creation({from, prefix_range_end(from)}), deadline());
  // Key "<prefix>/<name>/<id>": the name is what lies between the prefix and
  // the last '/'. Entries come oldest first, so a name's first is its holder.
  std::map<std::string, LockInfo> rows;
  std::map<std::string, std::string> values;
  for (const auto& kv : everything.kvs()) {
    const std::string_view key = kv.key();
    const auto last_slash = key.rfind('/');
    if (last_slash == std::string_view::npos || last_slash <= root.size() || last_slash + 1 == key.size()) continue;
    const std::string name(key.substr(root.size(), last_slash - root.size()));
    if (name.find('\0') != std::string::npos) continue;  // a manager's inbox, not a lock
    auto [row, first] = rows.try_emplace(name);
    if (first) {
      row->second = LockInfo{name, kv.key(), "", kv.lease(), kv.create_revision(), {}, {}, 0};
      values[name] = kv.value();
    } else {
      ++row->second.waiters;
    }
  }
  std::vector<LockInfo> result;
  result.reserve(rows.size());
  std::map<std::int64_t, std::int64_t> ttls;
  for (auto& [name, row] : rows) {
    describe(row, values[name], ttls);
    result.push_back(std::move(row));
  }
  return result;  // std::map kept them sorted by name
}

bool Admin::force_unlock(std::string_view name) const {
  const auto holder = info(name);
  if (!holder) return false;
  // Only the same holder: a hand-over meanwhile must not cost the next one its lock.
  auto txn = while_created_at(holder->key, holder->fencing_token);
  txn.add_success()->mutable_request_delete_range()->set_key(holder->key);
  const bool removed = client_.txn(txn, deadline()).succeeded();
  if (removed) {
    log_(LogLevel::warning, "lock force-unlocked",
         {{"name", std::string(name)}, {"key", holder->key}, {"owner", holder->owner}});
  }
  return removed;
}

bool Admin::revoke_lease(std::int64_t lease_id) const {
  // Only leases of this prefix's locks: an admin of one namespace must not end
  // another's leases.
  const auto lease = client_.lease_time_to_live(lease_id, deadline(), /*keys=*/true);
  if (lease.ttl() < 0) return false;
  const std::string root = prefix_ + "/";
  const bool ours = std::any_of(lease.keys().begin(), lease.keys().end(),
                                [&](const std::string& key) { return key.starts_with(root); });
  if (!ours) {
    throw Error(errc::invalid_argument, "lease " + lease_hex(lease_id) + " holds no lock under prefix " +
                                            quote_value(prefix_) + "; not revoking it");
  }
  const bool revoked = client_.lease_revoke(lease_id, deadline());
  if (revoked) {
    log_(LogLevel::warning, "lease revoked by an admin", {{"lease", lease_hex(lease_id)}});
  }
  return revoked;
}

}  // namespace etcdlock::detail
