// Leadership: an election's leadership that an object owns, not a thread:
// what an asynchronous campaign (Election::async_campaign) yields.
#pragma once

#include <cstdint>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>

#include "etcdlock/owned_hold.h"

namespace etcdlock {

namespace detail {
struct AsyncLeadership;
}

// One leadership of an Election, held until resigned or lost; resigned on
// destruction. Move-only; a default-constructed Leadership holds nothing.
//
// Any thread may use it. While it is held, this process's other candidates
// (a thread in Election::campaign(), another asynchronous campaign) wait
// behind it, in one FIFO order. Election::is_leader() is true meanwhile.
// Moved over another, it resigns what that one held first; `if (leadership)`
// says it holds one, lost or not, until resign().
class Leadership : public detail::OwnedHold<Leadership, detail::AsyncLeadership> {
 public:
  Leadership() = default;

  // Leads, as far as this process knows: the leadership was not lost.
  bool is_leader() const;

  // Replaces the proposal, in one Txn that compares the key's create
  // revision: false when the leadership is gone (it is then lost). Throws
  // Error: unavailable; lock_not_held without a leadership.
  bool proclaim(std::string_view value);

  // Deletes the key, so the next candidate leads. Never throws: from the call
  // on this process does not lead, whatever etcd answers; when etcd does not
  // confirm the delete, the lost token fires and the key is removed in the
  // background.
  void resign() noexcept { end(); }
  // As resign(), reporting errc::lock_not_held (nothing held),
  // errc::lock_expired (it had been lost) and errc::unavailable (no answer).
  void resign(std::error_code& ec) noexcept { end(ec); }

  // Requested when the leadership ends involuntarily, before etcd can let
  // another candidate lead. Without one, a token with stop_possible() == false.
  std::stop_token lost_token() const;
  bool lost() const;
  // The key's create revision: strictly increasing from one leader to the
  // next. 0 without a leadership or once it was lost.
  std::int64_t fencing_token() const;
  // The election's name, and the etcd key of the leadership; empty without one.
  std::string name() const;
  std::string key() const;
  // Writes to etcd only while this leadership stands: true when committed.
  // Throws Error: unavailable; lock_not_held without a leadership.
  bool guarded_put(std::string_view key, std::string_view value);
  bool guarded_delete(std::string_view key);

 private:
  friend class Election;
  friend class detail::OwnedHold<Leadership, detail::AsyncLeadership>;
  explicit Leadership(std::shared_ptr<detail::AsyncLeadership> state) noexcept : OwnedHold(std::move(state)) {}
  static void end_hold(std::shared_ptr<detail::AsyncLeadership> state, std::error_code& ec) noexcept;
};

}  // namespace etcdlock
