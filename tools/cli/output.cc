#include "output.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

namespace etcdlock::cli {
namespace {

// "2026-11-24T01:02:03Z", or "" when unknown (holders that are not etcdlock's).
std::string utc(std::chrono::system_clock::time_point time) {
  if (time == std::chrono::system_clock::time_point{}) return "";
  const std::time_t seconds = std::chrono::system_clock::to_time_t(time);
  std::tm parts{};
  gmtime_r(&seconds, &parts);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &parts);
  return text;
}

// "2026-11-24T01:02:03.456Z".
std::string utc_millis(std::chrono::system_clock::time_point time) {
  const auto seconds = std::chrono::floor<std::chrono::seconds>(time);
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(time - seconds).count();
  auto text = utc(seconds);
  if (text.empty()) return text;
  char fraction[8];
  std::snprintf(fraction, sizeof fraction, ".%03d", static_cast<int>(millis));
  text.insert(text.size() - 1, fraction);
  return text;
}

nlohmann::json utc_or_null(std::chrono::system_clock::time_point time) {
  const auto text = utc(time);
  return text.empty() ? nlohmann::json(nullptr) : nlohmann::json(text);
}

nlohmann::json to_json(const QueueEntryInfo& entry) {
  nlohmann::json json = {{"key", entry.key},
                         {"owner", entry.owner},
                         {"lease_id", lease_hex(entry.lease_id)},
                         {"fencing_token", entry.fencing_token},
                         {"created_at", utc_or_null(entry.created_at)},
                         {"holds", entry.holds}};
  if (!entry.multi_lock_names.empty()) json["multi_lock_names"] = entry.multi_lock_names;
  return json;
}

nlohmann::json to_json(const LockInfo& row) {
  auto queue = nlohmann::json::array();
  for (const auto& entry : row.queue) queue.push_back(to_json(entry));
  return {{"name", row.name},
          {"key", row.key},
          {"owner", row.owner},
          {"lease_id", lease_hex(row.lease_id)},
          {"fencing_token", row.fencing_token},
          {"created_at", utc_or_null(row.created_at)},
          {"ttl_remaining_s", row.ttl_remaining.count()},
          {"waiters", row.waiters},
          {"queue", std::move(queue)}};
}

nlohmann::json to_json(const Deadlock& deadlock) {
  auto members = nlohmann::json::array();
  for (const auto& member : deadlock.members) {
    members.push_back({{"lease_id", lease_hex(member.lease_id)},
                       {"owner", member.owner},
                       {"holds", member.holds},
                       {"holding", member.holding},
                       {"waits_for", member.waits_for}});
  }
  return {{"members", std::move(members)}};
}

// Prints `cells` in columns two spaces apart, the first line a header.
template <std::size_t kColumns>
void print_columns(std::ostream& out, const std::vector<std::array<std::string, kColumns>>& cells) {
  std::array<std::size_t, kColumns> widths{};
  for (const auto& line : cells) {
    for (std::size_t i = 0; i < kColumns; ++i) widths[i] = std::max(widths[i], line[i].size());
  }
  for (const auto& line : cells) {
    std::string text;
    for (std::size_t i = 0; i < kColumns; ++i) {
      text += line[i];
      if (i + 1 < kColumns) text += std::string(widths[i] - line[i].size() + 2, ' ');
    }
    out << text << "\n";
  }
}

// "3s", "4m05s", "2h03m"; "-" when the start is unknown.
std::string age(std::chrono::system_clock::time_point since, std::chrono::system_clock::time_point now) {
  using namespace std::chrono;
  if (since == system_clock::time_point{}) return "-";
  const auto seconds = std::max<std::int64_t>(0, duration_cast<std::chrono::seconds>(now - since).count());
  char text[32];
  if (seconds < 60) {
    std::snprintf(text, sizeof text, "%llds", static_cast<long long>(seconds));
  } else if (seconds < 3600) {
    std::snprintf(text, sizeof text, "%lldm%02llds", static_cast<long long>(seconds / 60),
                  static_cast<long long>(seconds % 60));
  } else {
    std::snprintf(text, sizeof text, "%lldh%02lldm", static_cast<long long>(seconds / 3600),
                  static_cast<long long>(seconds / 60 % 60));
  }
  return text;
}

}  // namespace

std::string json_text(const nlohmann::json& value) {
  // Keys and values written by other clients need not be UTF-8: their bad
  // bytes become U+FFFD rather than an exception.
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte == '\n') {
      out += "\\n";
    } else if (byte == '\t') {
      out += "\\t";
    } else if (byte < 0x20 || byte == 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out;
}

void print_table(std::ostream& out, const std::vector<LockInfo>& rows) {
  std::vector<std::array<std::string, 7>> cells;
  cells.push_back({"NAME", "HOLDER KEY", "OWNER", "FENCING TOKEN", "CREATED", "TTL", "WAITERS"});
  for (const auto& row : rows) {
    const auto created = utc(row.created_at);
    cells.push_back({printable(row.name), printable(row.key), printable(row.owner), std::to_string(row.fencing_token),
                     created.empty() ? "-" : created,
                     row.ttl_remaining.count() < 0 ? "expired" : std::to_string(row.ttl_remaining.count()) + "s",
                     std::to_string(row.waiters)});
  }
  print_columns(out, cells);
}

void print_status(std::ostream& out, const std::vector<LockInfo>& rows, std::chrono::system_clock::time_point now) {
  // A multi-lock's entries, one per name, share their lease and create
  // revision: a column names the other names of such an entry, when any.
  // Entries say their set (QueueEntryInfo::multi_lock_names), which may
  // name names this listing does not show; older ones are known by the two.
  std::map<std::pair<std::int64_t, std::int64_t>, std::vector<std::string>> names_of_hold;
  for (const auto& row : rows) {
    for (const auto& entry : row.queue) {
      auto& names = names_of_hold[{entry.lease_id, entry.fencing_token}];
      for (const auto& name :
           entry.multi_lock_names.empty() ? std::vector<std::string>{row.name} : entry.multi_lock_names) {
        if (std::ranges::find(names, name) == names.end()) names.push_back(name);
      }
    }
  }
  const bool multi = std::ranges::any_of(names_of_hold, [](const auto& item) { return item.second.size() > 1; });
  std::vector<std::array<std::string, 8>> cells;
  cells.push_back({"NAME", "ROLE", "OWNER", "LEASE", "FENCING TOKEN", "QUEUED", "FOR", "WITH"});
  for (const auto& row : rows) {
    std::size_t waiting = 0;
    for (const auto& entry : row.queue) {
      const auto queued = utc(entry.created_at);
      std::string with;
      for (const auto& name : names_of_hold[{entry.lease_id, entry.fencing_token}]) {
        if (name != row.name) with += (with.empty() ? "" : ",") + printable(name);
      }
      cells.push_back({printable(row.name), entry.holds ? "holder" : "waiter " + std::to_string(++waiting),
                       printable(entry.owner), lease_hex(entry.lease_id), std::to_string(entry.fencing_token),
                       queued.empty() ? "-" : queued, age(entry.created_at, now), with.empty() ? "-" : with});
    }
  }
  if (multi) {
    print_columns(out, cells);
    return;
  }
  std::vector<std::array<std::string, 7>> without;  // as before multi-locks: no WITH column
  for (const auto& line : cells) without.push_back({line[0], line[1], line[2], line[3], line[4], line[5], line[6]});
  print_columns(out, without);
}

void print_json(std::ostream& out, const std::vector<LockInfo>& rows) {
  auto array = nlohmann::json::array();
  for (const auto& row : rows) array.push_back(to_json(row));
  out << json_text(array) << "\n";
}

void print_deadlocks(std::ostream& out, const std::vector<Deadlock>& deadlocks) {
  for (const auto& deadlock : deadlocks) {
    std::string line = "deadlock:";
    for (const auto& member : deadlock.members) {
      if (line.size() > 9) line += ";";
      line += " " + printable(member.owner) + " (lease " + lease_hex(member.lease_id) + ") " +
              (member.holding ? "holds " : "waits ahead in ") + printable(member.holds) + " and waits for " +
              printable(member.waits_for);
    }
    out << line << "\n";
  }
}

void print_status_json(std::ostream& out, const std::vector<LockInfo>& rows, const std::vector<Deadlock>& deadlocks) {
  auto locks = nlohmann::json::array();
  for (const auto& row : rows) locks.push_back(to_json(row));
  auto cycles = nlohmann::json::array();
  for (const auto& deadlock : deadlocks) cycles.push_back(to_json(deadlock));
  out << json_text({{"locks", std::move(locks)}, {"deadlocks", std::move(cycles)}}) << "\n";
}

void print_json(std::ostream& out, const std::optional<LockInfo>& row) {
  out << json_text(row ? to_json(*row) : nlohmann::json(nullptr)) << "\n";
}

void print_event(std::ostream& out, const LockEvent& event, bool json, std::chrono::system_clock::time_point at) {
  if (json) {
    out << json_text({{"time", utc_millis(at)},
                      {"event", to_string(event.kind)},
                      {"name", event.name},
                      {"revision", event.revision},
                      {"lease_ended", event.lease_ended},
                      {"entry", to_json(event.entry)}})
        << "\n";
    return;
  }
  out << utc_millis(at) << "  " << to_string(event.kind) << (event.lease_ended ? " (lease ended)" : "") << "  "
      << printable(event.name) << "  owner=" << printable(event.entry.owner)
      << " lease=" << lease_hex(event.entry.lease_id) << " token=" << event.entry.fencing_token
      << " revision=" << event.revision << "\n";
}

}  // namespace etcdlock::cli
