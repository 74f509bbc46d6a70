#include "keys/key_layout.h"

#include "base/text.h"

namespace etcdlock::detail {
namespace {

constexpr std::string_view kInboxMark{"\0inbox/", 7};

bool is_lowercase_hex(std::string_view text) {
  return !text.empty() && text.size() <= 16 && text.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

}  // namespace

std::string queue_dir(std::string_view prefix, std::string_view name) {
  std::string dir;
  dir.reserve(prefix.size() + name.size() + 2);
  dir.append(prefix).append("/").append(name).append("/");
  return dir;
}

std::string queue_dir_of_entry(std::string_view key) { return std::string(key.substr(0, key.rfind('/') + 1)); }

std::string queue_key(std::string_view dir, std::int64_t lease_id) { return std::string(dir) + hex_id(lease_id); }

bool is_own_entry(std::string_view dir, std::string_view key) {
  if (!key.starts_with(dir) || key.size() == dir.size()) return false;
  return key.find('/', dir.size()) == std::string_view::npos;
}

bool is_inbox_key(std::string_view key) {
  // "<prefix>/\0inbox/<id>"; no prefix or name holds a NUL byte.
  return key.find(std::string_view("/\0inbox/", 8)) != std::string_view::npos;
}

std::optional<std::string_view> lock_name_of(std::string_view prefix, std::string_view key) {
  // "<prefix>/<name>/<lease id>": the name lies between the prefix and the last '/'.
  if (!key.starts_with(prefix) || key.size() <= prefix.size() || key[prefix.size()] != '/') return std::nullopt;
  const auto name_start = prefix.size() + 1;
  const auto last_slash = key.rfind('/');
  if (last_slash <= name_start || last_slash + 1 == key.size()) return std::nullopt;
  const auto name = key.substr(name_start, last_slash - name_start);
  if (name.find('\0') != std::string_view::npos) return std::nullopt;  // an inbox
  return name;
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

std::string inbox_key(std::string_view prefix, std::uint64_t manager_id) {
  std::string key(prefix);
  key += '/';
  key += kInboxMark;
  key += hex_id(static_cast<std::int64_t>(manager_id));
  return key;
}

bool is_inbox_key_for(std::string_view dir, std::string_view inbox) {
  const auto mark = inbox.find(kInboxMark);
  if (mark == std::string_view::npos || mark == 0 || inbox[mark - 1] != '/') return false;
  return dir.starts_with(inbox.substr(0, mark)) && is_lowercase_hex(inbox.substr(mark + kInboxMark.size()));
}

}  // namespace etcdlock::detail
