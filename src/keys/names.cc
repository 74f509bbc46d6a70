#include "keys/names.h"

#include <string>

#include "base/text.h"
#include "etcdlock/error.h"

namespace etcdlock::detail {
namespace {

// The rules shared by names and prefixes; `what` names the kind in messages.
struct Slashes {
  bool leading = false;   // a prefix's "/etcdlock"
  bool trailing = false;  // a name prefix's "jobs/"
};

void validate_path(std::string_view value, std::string_view what, Slashes allowed) {
  auto reject = [&](std::string_view why) {
    throw Error(errc::invalid_key, std::string(what) + " " + quote_value(value) + " " + std::string(why));
  };
  if (value.empty()) reject("is empty");
  if (value.size() > kMaxNameBytes) {
    reject("is " + std::to_string(value.size()) + " bytes long; the limit is " + std::to_string(kMaxNameBytes));
  }
  if (value.find('\0') != std::string_view::npos) reject("contains a NUL byte");
  if (!is_valid_utf8(value)) reject("is not valid UTF-8");
  std::string_view body = value;
  if (allowed.leading && body.front() == '/') body.remove_prefix(1);
  if (body.empty()) reject("has nothing after its leading '/'");
  if (allowed.trailing && body.size() > 1 && body.back() == '/') body.remove_suffix(1);
  if (body.front() == '/') reject("starts with '/'");
  if (body.back() == '/') reject("ends with '/'");
  if (body.find("//") != std::string_view::npos) reject("contains \"//\"");
}

}  // namespace

void validate_name(std::string_view name) { validate_path(name, "lock name", {}); }

void validate_prefix(std::string_view prefix) { validate_path(prefix, "prefix", {.leading = true}); }

void validate_name_prefix(std::string_view name_prefix) {
  if (!name_prefix.empty()) validate_path(name_prefix, "lock name prefix", {.trailing = true});
}

}  // namespace etcdlock::detail
