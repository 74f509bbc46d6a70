#include "manager/manager_options.h"

#include <string>

#include "base/text.h"
#include "etcdlock/error.h"
#include "keys/holder_value.h"
#include "keys/names.h"

namespace etcdlock::detail {
namespace {

using std::chrono::milliseconds;

constexpr std::chrono::seconds kMinTtl{1};
constexpr std::chrono::seconds kMaxTtl{24 * 60 * 60};

}  // namespace

ManagerOptions validated(ManagerOptions options) {
  if (options.ttl < kMinTtl || options.ttl > kMaxTtl) {
    throw Error(errc::invalid_argument,
                "ttl of " + std::to_string(options.ttl.count()) + " s is out of range; it must be from 1 s to 24 h");
  }
  if (options.dial_timeout <= milliseconds::zero()) {
    throw Error(errc::invalid_argument,
                "dial_timeout of " + std::to_string(options.dial_timeout.count()) + " ms must be positive");
  }
  if (options.command_timeout <= milliseconds::zero()) {
    throw Error(errc::invalid_argument,
                "command_timeout of " + std::to_string(options.command_timeout.count()) + " ms must be positive");
  }
  validate_prefix(options.prefix);
  // The owner goes into every entry's value, a JSON document, whose strings
  // are UTF-8: checked here, so that it fails the manager and not each lock.
  if (!is_valid_utf8(options.owner)) {
    throw Error(errc::invalid_argument, "owner " + quote_value(options.owner) + " is not valid UTF-8");
  }
  if (options.owner.empty()) options.owner = default_owner();
  return options;
}

namespace {

void validate_retries(std::chrono::milliseconds interval, int max_retries, std::chrono::milliseconds max_interval,
                      const std::string& what) {
  if (interval <= milliseconds::zero() || interval > std::chrono::hours(1)) {
    throw Error(errc::invalid_argument, "retry_interval of " + std::to_string(interval.count()) + " ms for " + what +
                                            " must be positive and at most 1 h");
  }
  if (max_retries < 0) {
    throw Error(errc::invalid_argument,
                "max_retries of " + std::to_string(max_retries) + " for " + what + " must not be negative");
  }
  if (max_interval <= milliseconds::zero() || max_interval > std::chrono::hours(1)) {
    throw Error(errc::invalid_argument, "max_retry_interval of " + std::to_string(max_interval.count()) + " ms for " +
                                            what + " must be positive and at most 1 h");
  }
}

}  // namespace

void validate(const LockOptions& options, std::string_view name) {
  validate_retries(options.retry_interval, options.max_retries, options.max_retry_interval,
                   "lock " + quote_value(name));
}

void validate(const SemaphoreOptions& options, std::string_view name) {
  validate_retries(options.retry_interval, options.max_retries, options.max_retry_interval,
                   "semaphore " + quote_value(name));
}

void validate(const ElectionOptions& options, std::string_view name) {
  validate_retries(options.retry_interval, options.max_retries, options.max_retry_interval,
                   "election " + quote_value(name));
}

}  // namespace etcdlock::detail
