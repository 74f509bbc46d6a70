#include "duration.h"

#include <charconv>
#include <cmath>
#include <stdexcept>
#include <string>

namespace etcdlock::cli {
namespace {

// Go's units (time.ParseDuration), in milliseconds.
std::optional<double> unit_milliseconds(std::string_view unit) {
  if (unit == "ns") return 1e-6;
  if (unit == "us" || unit == "µs") return 1e-3;
  if (unit == "ms") return 1;
  if (unit == "s") return 1000;
  if (unit == "m") return 60'000;
  if (unit == "h") return 3'600'000;
  return std::nullopt;
}

}  // namespace

std::chrono::milliseconds parse_duration(std::string_view text) {
  auto reject = [&] {
    return std::invalid_argument("invalid duration \"" + std::string(text) +
                                 "\" (expected numbers with units h, m, s, ms, us or ns, such as 500ms, 1.5s or "
                                 "1m30s, or a plain number of seconds)");
  };
  const char* at = text.data();
  const char* const end = text.data() + text.size();
  double total = 0;
  bool plain = false;  // a number without a unit: seconds, and nothing after it
  int parts = 0;
  while (at != end) {
    double amount = 0;
    const auto [after_number, error] = std::from_chars(at, end, amount, std::chars_format::fixed);
    if (error != std::errc() || !std::isfinite(amount) || amount < 0) throw reject();
    const char* after_unit = after_number;
    while (after_unit != end && !(*after_unit >= '0' && *after_unit <= '9') && *after_unit != '.') ++after_unit;
    const std::string_view unit(after_number, static_cast<std::size_t>(after_unit - after_number));
    if (unit.empty()) {
      if (parts > 0) throw reject();  // "1m30": Go wants a unit on every part
      plain = true;
      total += amount * 1000;
    } else {
      const auto per_unit = unit_milliseconds(unit);
      if (!per_unit || plain) throw reject();
      total += amount * *per_unit;
    }
    ++parts;
    at = after_unit;
  }
  if (parts == 0) throw reject();
  if (total > 1e12) throw reject();  // beyond 30 years: a typo, not a timeout
  return std::chrono::milliseconds(static_cast<long long>(std::llround(total)));
}

}  // namespace etcdlock::cli
