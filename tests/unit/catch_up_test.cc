#include "observe/catch_up.h"

#include <gtest/gtest.h>

namespace etcdlock::detail {
namespace {

etcd::WatchEvent at(std::int64_t revision) {
  etcd::WatchEvent event;
  event.key = "k";
  event.mod_revision = revision;
  return event;
}

TEST(CatchUp, HoldsBackEventsUntilTheFirstReadEnds) {
  CatchUp catch_up;
  const std::vector<etcd::WatchEvent> early{at(5)};
  EXPECT_FALSE(catch_up.take(early));
  bool again = true;
  const auto held = catch_up.read_done(4, again);
  EXPECT_FALSE(again);
  ASSERT_EQ(held.size(), 1u);
  EXPECT_FALSE(catch_up.in_last_read(held[0]));
  EXPECT_TRUE(catch_up.in_last_read(at(4)));
  EXPECT_TRUE(catch_up.take(early)) << "once read, events are applied at once";
}

TEST(CatchUp, AGapStartsOneReadAndAGapDuringItAnother) {
  CatchUp catch_up;
  bool again = false;
  (void)catch_up.read_done(10, again);
  EXPECT_TRUE(catch_up.gap()) << "a gap starts a read";
  EXPECT_FALSE(catch_up.gap()) << "not a second one at once";
  const std::vector<etcd::WatchEvent> meanwhile{at(12)};
  EXPECT_FALSE(catch_up.take(meanwhile));
  EXPECT_EQ(catch_up.read_done(11, again).size(), 1u);
  EXPECT_TRUE(again) << "the gap during the read may lie past it";
  EXPECT_FALSE(catch_up.take(meanwhile)) << "still reading";
  (void)catch_up.read_done(20, again);
  EXPECT_FALSE(again);
  EXPECT_TRUE(catch_up.in_last_read(at(12)));
  EXPECT_TRUE(catch_up.take(meanwhile));
}

}  // namespace
}  // namespace etcdlock::detail
