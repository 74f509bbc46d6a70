#include "names.h"

#include <string>

#include "etcdlock/error.h"
#include "text.h"

namespace etcdlock::detail {
namespace {

// The rules shared by names and prefixes; `what` names the kind in messages.
void validate_path(std::string_view value, std::string_view what, bool leading_slash_allowed) {
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
  if (leading_slash_allowed && body.front() == '/') body.remove_prefix(1);
  if (body.empty()) reject("has nothing after its leading '/'");
  if (body.front() == '/') reject("starts with '/'");
  if (body.back() == '/') reject("ends with '/'");
  if (body.find("//") != std::string_view::npos) reject("contains \"//\"");
}

}  // namespace

void validate_name(std::string_view name) { validate_path(name, "lock name", false); }

void validate_prefix(std::string_view prefix) { validate_path(prefix, "prefix", true); }

}  // namespace etcdlock::detail
