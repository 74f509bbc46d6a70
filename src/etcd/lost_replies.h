// LostReplies: a test hook that makes a write reach etcd and commit while its
// reply never comes back, at a named call site.
//
// A reply lost after its write committed is the fault that most easily admits
// two holders: the writer cannot tell "done" from "not done", and whatever
// local state it keeps must take the side that cannot admit a second holder.
// The lost-reply matrix (tests/integration/lost_reply_test.cc) arms this hook
// for every write the library sends, one call site at a time.
//
// The client sends the request and waits for its answer as usual; an armed
// site then drops the answer and fails the call with errc::unavailable, as a
// deadline passed on a hung member would. Disarmed, the hook costs one relaxed
// atomic load per write.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "etcd/rpc.pb.h"

namespace etcdlock::detail::etcd {

namespace pb = ::etcdserverpb;

// The call sites, as the client's callers name them. A new write gets a name
// here and a row in the lost-reply matrix.
namespace write_site {
inline constexpr std::string_view enqueue = "enqueue";      // a queue entry's create (lock, try, permit, campaign)
inline constexpr std::string_view release = "release";      // an entry's delete at unlock or permit release
inline constexpr std::string_view note = "note";            // a hand-over note written after a release
inline constexpr std::string_view downgrade = "downgrade";  // a write entry turned into a read entry
inline constexpr std::string_view resign = "resign";        // a leader's key deleted
inline constexpr std::string_view proclaim = "proclaim";    // a leader's value replaced
inline constexpr std::string_view removal = "removal";      // a leftover entry removed (also retried in the background)
inline constexpr std::string_view guarded_write = "guarded_write";  // guarded_put / guarded_delete
inline constexpr std::string_view force_unlock = "force_unlock";    // an admin's delete of a holder's key
inline constexpr std::string_view lease_revoke = "lease_revoke";    // a lease revoked (close, admin)
inline constexpr std::string_view lease_grant = "lease_grant";      // a session's lease granted
inline constexpr std::string_view multi_enqueue = "multi_enqueue";  // a multi-lock's entries created in one Txn
inline constexpr std::string_view multi_release = "multi_release";  // a multi-lock's entries deleted in one Txn
}  // namespace write_site

// Process-wide. Thread-safe.
class LostReplies {
 public:
  // The next `count` writes at `site` whose request names a key that starts
  // with `key_prefix` (any key, when empty; for a lease call, the lease id in
  // lowercase hex) commit and lose their replies.
  static void arm(std::string_view site, std::string_view key_prefix = {}, int count = 1);
  // Forgets whatever is still armed.
  static void disarm();
  // How many replies were dropped at `site` since the process started.
  static int dropped(std::string_view site);

  // For the client, once etcd answered: true when this answer is to be lost.
  static bool take(std::string_view site, const pb::TxnRequest& request);
  static bool take(std::string_view site, std::int64_t lease_id);
};

}  // namespace etcdlock::detail::etcd
