#include "duration.h"

#include <charconv>
#include <cmath>
#include <stdexcept>
#include <string>

namespace etcdlock::cli {

std::chrono::milliseconds parse_duration(std::string_view text) {
  auto reject = [&] {
    return std::invalid_argument("invalid duration \"" + std::string(text) +
                                 "\" (expected a number with ms, s, m or h, such as 500ms or 1.5s)");
  };
  double amount = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), amount);
  if (error != std::errc() || !std::isfinite(amount) || amount < 0) throw reject();
  const std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  double milliseconds_per_unit = 0;
  if (unit.empty() || unit == "s") {
    milliseconds_per_unit = 1000;
  } else if (unit == "ms") {
    milliseconds_per_unit = 1;
  } else if (unit == "m") {
    milliseconds_per_unit = 60'000;
  } else if (unit == "h") {
    milliseconds_per_unit = 3'600'000;
  } else {
    throw reject();
  }
  const double total = amount * milliseconds_per_unit;
  if (total > 1e12) throw reject();  // beyond 30 years: a typo, not a timeout
  return std::chrono::milliseconds(static_cast<long long>(std::llround(total)));
}

}  // namespace etcdlock::cli
