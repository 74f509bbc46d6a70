// The command's durations, as Go's time.ParseDuration and so etcdctl read them.
#include "duration.h"
#include "loss_timing.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

namespace etcdlock::cli {
namespace {

using namespace std::chrono_literals;

TEST(CliDuration, SingleUnitsAndPlainSeconds) {
  EXPECT_EQ(parse_duration("500ms"), 500ms);
  EXPECT_EQ(parse_duration("1.5s"), 1500ms);
  EXPECT_EQ(parse_duration("2m"), 2min);
  EXPECT_EQ(parse_duration("1h"), 1h);
  EXPECT_EQ(parse_duration("3"), 3s);
  EXPECT_EQ(parse_duration("2500us"), 3ms);  // rounded to the millisecond
  EXPECT_EQ(parse_duration("0"), 0ms);
}

TEST(CliDuration, GoCompounds) {
  EXPECT_EQ(parse_duration("1m30s"), 90s);
  EXPECT_EQ(parse_duration("1h2m3.5s"), 1h + 2min + 3500ms);
  EXPECT_EQ(parse_duration("1s500ms"), 1500ms);
}

TEST(CliDuration, BadValuesAreNamed) {
  for (const std::string bad : {"", "soon", "1m30", "-1s", "1x", "s", "1e3s", "5 s", "1s-2s", "99999999h"}) {
    try {
      parse_duration(bad);
      ADD_FAILURE() << "accepted \"" << bad << "\"";
    } catch (const std::invalid_argument& error) {
      EXPECT_NE(std::string(error.what()).find("\"" + bad + "\""), std::string::npos) << error.what();
    }
  }
}

// The message of what `parse_loss_timing(ttl, kill_after)` throws.
std::string refusal(const std::string& ttl, const std::string& kill_after) {
  try {
    parse_loss_timing(ttl, kill_after);
  } catch (const std::invalid_argument& error) {
    return error.what();
  }
  return "";
}

TEST(CliLossTiming, EveryAcceptedTtlHasADefaultKillAfter) {
  for (const std::string ttl : {"1s", "1.5s", "2s", "5s", "30s", "1m", "24h"}) {
    const auto timing = parse_loss_timing(ttl, "");
    EXPECT_GT(timing.kill_after, 0ms) << ttl;
    EXPECT_LE(timing.kill_after, longest_kill_after(timing.ttl)) << ttl;
  }
  EXPECT_EQ(parse_loss_timing("30s", "").kill_after, 2500ms);  // half the loss margin, as the README says
  EXPECT_EQ(parse_loss_timing("1500ms", "").ttl, 2s);          // whole seconds, rounded up
}

TEST(CliLossTiming, TheTtlIsCheckedFirstAndNamedAlone) {
  for (const std::string ttl : {"500ms", "0", "25h"}) {
    const auto message = refusal(ttl, "");
    EXPECT_NE(message.find("--ttl " + ttl), std::string::npos) << message;
    EXPECT_EQ(message.find("--kill-after"), std::string::npos) << "a flag the user did not pass: " << message;
  }
  EXPECT_NE(refusal("soon", "").find("\"soon\""), std::string::npos);
}

TEST(CliLossTiming, AKillAfterTooLongIsNamed) {
  const auto message = refusal("30s", "10s");
  EXPECT_NE(message.find("--kill-after 10s"), std::string::npos) << message;
  EXPECT_EQ(parse_loss_timing("30s", "4s").kill_after, 4s);
  EXPECT_NE(refusal("1s", "1s").find("--kill-after 1s"), std::string::npos);
}

}  // namespace
}  // namespace etcdlock::cli
