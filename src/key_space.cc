#include "key_space.h"

#include <cstdio>

#include "etcdlock/error.h"

namespace etcdlock::detail {
namespace {

bool is_valid_utf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    std::size_t length = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : (lead >> 3) == 0x1E ? 4 : 0;
    if (length == 0 || i + length > text.size()) return false;
    for (std::size_t k = 1; k < length; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) >> 6) != 0x2) return false;
    }
    i += length;
  }
  return true;
}

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

std::string queue_dir(std::string_view prefix, std::string_view name) {
  std::string dir;
  dir.reserve(prefix.size() + name.size() + 2);
  dir.append(prefix).append("/").append(name).append("/");
  return dir;
}

std::string lease_hex(std::int64_t lease_id) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%llx", static_cast<unsigned long long>(lease_id));
  return hex;
}

std::string queue_key(std::string_view dir, std::int64_t lease_id) { return std::string(dir) + lease_hex(lease_id); }

bool is_queue_entry(std::string_view dir, std::string_view key) {
  if (!key.starts_with(dir) || key.size() == dir.size()) return false;
  return key.find('/', dir.size()) == std::string_view::npos;
}

std::string prefix_range_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // etcd's "every key" range end
}

std::string quote_value(std::string_view value) {
  constexpr std::size_t kShown = 64;
  // Bytes of valid UTF-8 are shown as they are; anything that could break a
  // terminal or a log line is escaped.
  const bool escape_high = !is_valid_utf8(value);
  std::string out = "\"";
  for (std::size_t i = 0; i < value.size() && i < kShown; ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f || (c >= 0x80 && escape_high)) {
      char escaped[5];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", c);
      out += escaped;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
  if (value.size() > kShown) out += " (" + std::to_string(value.size()) + " bytes)";
  return out;
}

}  // namespace etcdlock::detail
