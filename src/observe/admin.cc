#include "observe/admin.h"

#include <algorithm>
#include <map>

#include "base/text.h"
#include "etcd/lost_replies.h"
#include "keys/holder_value.h"
#include "keys/key_layout.h"
#include "keys/names.h"
#include "keys/queue_requests.h"
#include "observe/deadlocks.h"
#include "queue/admission.h"

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

pb::RangeResponse Admin::read_under(std::string_view name_prefix) const {
  validate_name_prefix(name_prefix);
  // "jobs/" also reads the keys of the lock "jobs" itself ("<prefix>/jobs/<id>"):
  // callers keep the names that start with the prefix.
  const std::string from = prefix_ + "/" + std::string(name_prefix);
  return client_.range(by_creation({from}), deadline());
}

LockInfo Admin::describe(std::string name, std::span<const mvccpb::KeyValue* const> entries, Leases& ttls) const {
  std::vector<const std::string*> values;
  for (const auto* kv : entries) values.push_back(&kv->value());
  auto holds = holding_entries(values);
  // An entry of a longer name ("a/b" under "a") is admitted by the rules of
  // its own queue, not by those of this one: the entries under its own
  // directory, all of which are among `entries`.
  const auto dir = queue_dir(prefix_, name);
  std::map<std::string_view, std::vector<bool>> longer_holds;  // by name, for the entries under its directory
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const std::string_view key = entries[i]->key();
    if (is_own_entry(dir, key)) continue;
    const auto longer = lock_name_of(prefix_, key);
    if (!longer) continue;
    const auto longer_dir = queue_dir(prefix_, *longer);
    auto [found, fresh] = longer_holds.try_emplace(*longer);
    if (fresh) {
      std::vector<const std::string*> its_values;
      for (const auto* kv : entries) {
        if (kv->key().starts_with(longer_dir)) its_values.push_back(&kv->value());
      }
      found->second = holding_entries(its_values);
    }
    std::size_t place = 0;  // the entry's place in its own queue
    for (std::size_t j = 0; j < i; ++j) {
      if (entries[j]->key().starts_with(longer_dir)) ++place;
    }
    holds[i] = found->second[place];
  }
  LockInfo row;
  row.name = std::move(name);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const auto& kv = *entries[i];
    row.queue.push_back(describe_entry(kv.key(), kv.value(), kv.lease(), kv.create_revision(), holds[i]));
    if (!holds[i]) ++row.waiters;
  }
  const auto& first = row.queue.front();
  row.key = first.key;
  row.owner = first.owner;
  row.lease_id = first.lease_id;
  row.fencing_token = first.fencing_token;
  row.created_at = first.created_at;
  auto [ttl, unknown] = ttls.try_emplace(row.lease_id, 0);
  if (unknown) ttl->second = client_.lease_time_to_live(row.lease_id, deadline()).ttl();
  row.ttl_remaining = std::chrono::seconds(ttl->second);
  return row;
}

std::optional<LockInfo> Admin::info(std::string_view name) const {
  validate_name(name);
  const auto dir = queue_dir(prefix_, name);
  const auto queue = client_.range(by_creation({dir}), deadline());
  // Every key under the directory is an entry of the queue, also one of a
  // longer name ("a/b" under "a"), as in etcd's recipe, but an inbox key (see
  // keys/key_layout.h).
  std::vector<const mvccpb::KeyValue*> entries;
  for (const auto& kv : queue.kvs()) {
    if (!is_inbox_key(kv.key())) entries.push_back(&kv);
  }
  if (entries.empty()) return std::nullopt;
  Leases ttls;
  return describe(std::string(name), entries, ttls);
}

std::vector<LockInfo> Admin::list(std::string_view name_prefix) const {
  const auto everything = read_under(name_prefix);
  // Entries come oldest first; std::map sorts the names. A name is listed
  // when it has entries of its own ...
  std::map<std::string_view, std::vector<const mvccpb::KeyValue*>> queues;
  for (const auto& kv : everything.kvs()) {
    // "jobs/" also reads the keys of the lock "jobs" itself ("<prefix>/jobs/<id>").
    const auto name = lock_name_of(prefix_, kv.key());
    if (name && name->starts_with(name_prefix)) queues.try_emplace(*name);
  }
  // ... and its queue holds every key under its directory, also those of
  // longer names ("a/b" under "a"), as in etcd's recipe, but inbox keys (see
  // keys/key_layout.h).
  const std::size_t names_start = prefix_.size() + 1;
  for (const auto& kv : everything.kvs()) {
    const std::string_view key = kv.key();
    if (is_inbox_key(key)) continue;
    for (auto slash = key.find('/', names_start); slash != std::string_view::npos; slash = key.find('/', slash + 1)) {
      const auto queue = queues.find(key.substr(names_start, slash - names_start));
      if (queue != queues.end()) queue->second.push_back(&kv);
    }
  }
  std::vector<LockInfo> rows;
  rows.reserve(queues.size());
  Leases ttls;
  for (const auto& [name, entries] : queues) rows.push_back(describe(std::string(name), entries, ttls));
  return rows;
}

std::vector<Deadlock> Admin::deadlocks(std::string_view name_prefix) const {
  const auto everything = read_under(name_prefix);
  std::vector<PrefixEntry> entries;
  for (const auto& kv : everything.kvs()) {
    const auto name = lock_name_of(prefix_, kv.key());
    if (name && name->starts_with(name_prefix)) {
      entries.push_back({kv.key(), kv.value(), kv.lease(), kv.create_revision()});
    }
  }
  return find_deadlocks(prefix_, entries);
}

bool Admin::force_unlock(std::string_view name) const {
  const auto holder = info(name);
  if (!holder) return false;
  // The first entry may be a longer name's ("a/b" under "a"): that holder
  // holds the other name, which this call must not end.
  if (!is_own_entry(queue_dir(prefix_, name), holder->key)) {
    const auto longer = lock_name_of(prefix_, holder->key);
    throw Error(errc::invalid_argument, "the first entry of the queue of " + quote_value(name) + " is one of " +
                                            (longer ? "the longer name " + quote_value(*longer)
                                                    : "a longer name, " + quote_value(holder->key)) +
                                            "; force-unlock that name instead");
  }
  // Only the same holder: a hand-over meanwhile must not cost the next one its lock.
  auto txn = while_created_at(holder->key, holder->fencing_token);
  txn.add_success()->mutable_request_delete_range()->set_key(holder->key);
  const bool removed = client_.txn(txn, deadline(), etcd::write_site::force_unlock).succeeded();
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
  const bool revoked = client_.lease_revoke(lease_id, deadline()).has_value();
  if (revoked) {
    log_(LogLevel::warning, "lease revoked by an admin", {{"lease", lease_hex(lease_id)}});
  }
  return revoked;
}

}  // namespace etcdlock::detail
