#include "etcdlock/error.h"

#include <memory>
#include <string>

namespace etcdlock {
namespace {

class EtcdlockCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "etcdlock"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::lock_timeout:
        return "timed out waiting for the lock";
      case errc::lock_not_held:
        return "the lock is not held by this thread";
      case errc::lock_already_held:
        return "the lock is already held by this thread";
      case errc::lock_expired:
        return "the hold of the lock was lost";
      case errc::invalid_key:
        return "invalid lock name or prefix";
      case errc::unavailable:
        return "etcd is unavailable";
      case errc::closed:
        return "the lock manager is closed";
      case errc::permission_denied:
        return "etcd denied the request";
      case errc::invalid_argument:
        return "invalid argument";
      case errc::cancelled:
        return "the wait for the lock was cancelled";
    }
    return "unknown etcdlock error " + std::to_string(value);
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const EtcdlockCategory category;
  return category;
}

std::error_code make_error_code(errc code) noexcept { return {static_cast<int>(code), error_category()}; }

std::string_view to_string(errc code) noexcept {
  switch (code) {
    case errc::lock_timeout:
      return "LOCK_TIMEOUT";
    case errc::lock_not_held:
      return "LOCK_NOT_HELD";
    case errc::lock_already_held:
      return "LOCK_ALREADY_HELD";
    case errc::lock_expired:
      return "LOCK_EXPIRED";
    case errc::invalid_key:
      return "INVALID_KEY";
    case errc::unavailable:
      return "UNAVAILABLE";
    case errc::closed:
      return "CLOSED";
    case errc::permission_denied:
      return "PERMISSION_DENIED";
    case errc::invalid_argument:
      return "INVALID_ARGUMENT";
    case errc::cancelled:
      return "CANCELLED";
  }
  return "UNKNOWN";
}

namespace {

// "<NAME>: <message>". A message that already starts with the name (the text
// of another Error of the same code, passed on) is not prefixed again.
std::string error_text(errc code, const std::string& message) {
  const std::string name(to_string(code));
  const std::string text = message.empty() ? error_category().message(static_cast<int>(code)) : message;
  if (text.starts_with(name + ": ")) return text;
  return name + ": " + text;
}

}  // namespace

Error::Error(errc code, const std::string& message)
    : std::system_error(make_error_code(code)), what_(std::make_shared<const std::string>(error_text(code, message))) {}

}  // namespace etcdlock
