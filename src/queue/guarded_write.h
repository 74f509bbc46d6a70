// Writes to etcd that commit only while a hold stands: in one Txn with the
// compare of the hold's key and create revision (its fencing token), so a
// holder that paused past its lease cannot overwrite the next holder's work.
#pragma once

#include <optional>
#include <string_view>

#include "etcd/client.h"
#include "keys/queue_requests.h"
#include "queue/hold.h"

namespace etcdlock::detail {

// `guard` is the hold's while_created_at() Txn, nullopt when nothing is held.
// True when committed. Throws Error(errc::unavailable).
bool guarded_put(const etcd::Client& client, std::optional<pb::TxnRequest> guard, std::string_view key,
                 std::string_view value);
bool guarded_delete(const etcd::Client& client, std::optional<pb::TxnRequest> guard, std::string_view key);

// The guard of `hold`: its while_created_at() Txn, nullopt once it is lost.
std::optional<pb::TxnRequest> while_standing(const Hold& hold);

}  // namespace etcdlock::detail
