#include "keys/holder_value.h"

#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "etcdlock/version.h"

namespace etcdlock::detail {
namespace {

using std::chrono::milliseconds;
using std::chrono::system_clock;

// "2026-11-24T01:02:03.456Z"
std::string format_utc(system_clock::time_point time) {
  const auto since_epoch = std::chrono::floor<milliseconds>(time.time_since_epoch());
  const std::time_t seconds = std::chrono::floor<std::chrono::seconds>(since_epoch).count();
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[64];
  std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900, utc.tm_mon + 1,
                utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, static_cast<int>(since_epoch.count() % 1000));
  return text;
}

std::optional<system_clock::time_point> parse_utc(const std::string& text) {
  std::tm utc{};
  int millis = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &utc.tm_year, &utc.tm_mon, &utc.tm_mday, &utc.tm_hour,
                  &utc.tm_min, &utc.tm_sec, &millis) != 7) {
    return std::nullopt;
  }
  utc.tm_year -= 1900;
  utc.tm_mon -= 1;
  return system_clock::from_time_t(timegm(&utc)) + milliseconds(millis);
}

HolderValue decode_fields(const nlohmann::json& document) {
  HolderValue value;
  value.owner = document.value("owner", "");
  value.hostname = document.value("hostname", "");
  value.pid = document.value("pid", 0L);
  value.version = document.value("version", "");
  if (auto created = parse_utc(document.value("created_at", ""))) value.created_at = *created;
  value.inbox = document.value("inbox", "");
  // The JSON field is "mode", as earlier versions wrote it.
  const std::string side = document.value("mode", "");
  value.side = side == "read"    ? HolderValue::Side::read
               : side == "write" ? HolderValue::Side::write
                                 : HolderValue::Side::none;
  value.limit = document.value("limit", std::int64_t{0});
  value.names = document.value("names", std::vector<std::string>{});
  return value;
}

}  // namespace

std::string encode_holder_value(const HolderValue& value) {
  nlohmann::json document = {
      {"owner", value.owner},     {"hostname", value.hostname},
      {"pid", value.pid},         {"created_at", format_utc(value.created_at)},
      {"version", value.version},
  };
  if (!value.inbox.empty()) document["inbox"] = value.inbox;
  if (value.side != HolderValue::Side::none)
    document["mode"] = value.side == HolderValue::Side::read ? "read" : "write";
  if (value.limit > 0) document["limit"] = value.limit;
  if (!value.names.empty()) document["names"] = value.names;
  return document.dump();
}

std::optional<HolderValue> decode_holder_value(std::string_view text) {
  const auto document = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!document.is_object() || !document.contains("owner")) return std::nullopt;
  try {
    return decode_fields(document);
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;  // a field of the wrong type: foreign data
  }
}

std::string this_hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "unknown-host";
  return name;
}

QueueEntryInfo describe_entry(const std::string& key, std::string_view value, std::int64_t lease,
                              std::int64_t create_revision, bool holds) {
  QueueEntryInfo entry;
  entry.key = key;
  entry.owner = "unknown";
  entry.lease_id = lease;
  entry.fencing_token = create_revision;
  entry.holds = holds;
  if (const auto holder = decode_holder_value(value)) {
    entry.owner = holder->owner;
    entry.created_at = holder->created_at;
    entry.multi_lock_names = holder->names;
  }
  return entry;
}

std::string default_owner() { return this_hostname() + ":" + std::to_string(getpid()); }

}  // namespace etcdlock::detail
