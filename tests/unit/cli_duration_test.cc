// The command's durations, as Go's time.ParseDuration and so etcdctl read them.
#include "duration.h"

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

}  // namespace
}  // namespace etcdlock::cli
