#include "output.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <ctime>
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

nlohmann::json to_json(const LockInfo& row) {
  const auto created = utc(row.created_at);
  return {{"name", row.name},
          {"key", row.key},
          {"owner", row.owner},
          {"lease_id", lease_hex(row.lease_id)},
          {"fencing_token", row.fencing_token},
          {"created_at", created.empty() ? nlohmann::json(nullptr) : nlohmann::json(created)},
          {"ttl_remaining_s", row.ttl_remaining.count()},
          {"waiters", row.waiters}};
}

}  // namespace

void print_table(std::ostream& out, const std::vector<LockInfo>& rows) {
  constexpr std::size_t kColumns = 7;
  std::vector<std::array<std::string, kColumns>> cells;
  cells.push_back({"NAME", "HOLDER KEY", "OWNER", "FENCING TOKEN", "CREATED", "TTL", "WAITERS"});
  for (const auto& row : rows) {
    const auto created = utc(row.created_at);
    cells.push_back({row.name, row.key, row.owner, std::to_string(row.fencing_token), created.empty() ? "-" : created,
                     row.ttl_remaining.count() < 0 ? "expired" : std::to_string(row.ttl_remaining.count()) + "s",
                     std::to_string(row.waiters)});
  }
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

void print_json(std::ostream& out, const std::vector<LockInfo>& rows) {
  auto array = nlohmann::json::array();
  for (const auto& row : rows) array.push_back(to_json(row));
  out << array.dump() << "\n";
}

void print_json(std::ostream& out, const std::optional<LockInfo>& row) {
  out << (row ? to_json(*row) : nlohmann::json(nullptr)).dump() << "\n";
}

}  // namespace etcdlock::cli
