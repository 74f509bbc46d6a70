// Errors reported by etcdlock: one std::error_category, an errc enum usable as a
// std::error_code, and Error, the exception every throwing call uses.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <system_error>

namespace etcdlock {

// What went wrong. The first five are the codes of the lock library etcdlock
// follows (the Go-style API whose names to_string() gives: "LOCK_TIMEOUT", ...).
enum class errc {
  lock_timeout = 1,   // the lock was not acquired before the deadline
  lock_not_held,      // unlock() by a thread that does not hold the lock
  lock_already_held,  // relock by the holding thread of a non-reentrant lock
  lock_expired,       // the hold ended involuntarily (lease lost, key deleted, manager closed)
  invalid_key,        // a lock name or prefix that etcdlock cannot use
  unavailable,        // etcd could not be reached within the deadline and retries
  closed,             // the manager was closed
  permission_denied,  // etcd refused the request
  invalid_argument,   // an option or argument out of range
  cancelled,          // the caller's stop_token was requested while waiting
};

const std::error_category& error_category() noexcept;
std::error_code make_error_code(errc code) noexcept;

// A code's name in capitals: "LOCK_TIMEOUT", "LOCK_NOT_HELD", ..., "CANCELLED".
std::string_view to_string(errc code) noexcept;

// The exception thrown by etcdlock. Branch on code(), which compares equal to
// an errc value: `catch (const Error& e) { if (e.code() == errc::lock_timeout) ... }`.
// what() is "<NAME>: <message>", e.g. "LOCK_TIMEOUT: lock \"x\" was not acquired
// in 5000 ms": the code's name once, then the message as given (the code's
// own description when the message is empty), without std::system_error's
// habit of appending that description to a message that already says it.
class Error : public std::system_error {
 public:
  Error(errc code, const std::string& message);
  // Copied, never moved from: a moved-from Error keeps its what().
  Error(const Error&) noexcept = default;
  Error& operator=(const Error&) noexcept = default;
  errc value() const noexcept { return static_cast<errc>(code().value()); }
  const char* what() const noexcept override { return what_->c_str(); }

 private:
  // Shared by the copies, which an exception's copy must make without
  // throwing. Not std::runtime_error's string: its count is kept inside the
  // standard library, where ThreadSanitizer cannot see it order one thread's
  // read of what() before another's release of the last copy (the copies
  // that a batch of Txns hands to each of its threads).
  std::shared_ptr<const std::string> what_;
};

}  // namespace etcdlock

/// \cond
// Makes errc usable as a std::error_code: `ec == etcdlock::errc::lock_expired`.
template <>
struct std::is_error_code_enum<etcdlock::errc> : std::true_type {};
/// \endcond
