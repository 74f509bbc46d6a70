// Leadership: an election's leadership that an object owns, not a thread:
// what an asynchronous campaign (Election::async_campaign) yields.
#pragma once

#include <cstdint>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>

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
class Leadership {
 public:
  Leadership() = default;
  Leadership(Leadership&& other) noexcept = default;
  // Resigns what this object held first.
  Leadership& operator=(Leadership&& other) noexcept;
  ~Leadership();

  // Holds a leadership, lost or not (until resign()).
  explicit operator bool() const noexcept { return state_ != nullptr; }
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
  void resign() noexcept;
  // As resign(), reporting errc::lock_not_held (nothing held),
  // errc::lock_expired (it had been lost) and errc::unavailable (no answer).
  void resign(std::error_code& ec) noexcept;

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
  explicit Leadership(std::shared_ptr<detail::AsyncLeadership> state);
  std::shared_ptr<detail::AsyncLeadership> state_;
};

}  // namespace etcdlock
