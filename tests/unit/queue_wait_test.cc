#include "queue_wait.h"

#include <gtest/gtest.h>

namespace etcdlock::detail {
namespace {

TEST(QueueWait, FirstWhenNothingIsAhead) {
  QueueWait wait("/p/a/3");
  EXPECT_FALSE(wait.first());  // reading
  wait.read_done(10, 10, {});
  EXPECT_TRUE(wait.first());
}

TEST(QueueWait, FirstAfterEveryEntryAheadIsDeleted) {
  QueueWait wait("/p/a/3");
  wait.read_done(12, 12, {"/p/a/1", "/p/a/2"});
  EXPECT_EQ(wait.ahead(), 2u);
  wait.on_delete("/p/a/2", 13);
  EXPECT_FALSE(wait.first());
  wait.on_delete("/p/a/1", 14);
  EXPECT_TRUE(wait.first());
}

TEST(QueueWait, DeletionsSeenBeforeTheReadAreIgnored) {
  QueueWait wait("/p/a/3");
  // A deletion at or before the read's revision is already reflected in it,
  // even if the key reappears in the read (a later holder reusing a lease).
  wait.on_delete("/p/a/1", 11);
  wait.read_done(15, 15, {"/p/a/1"});
  EXPECT_FALSE(wait.first());
  wait.on_delete("/p/a/1", 16);
  EXPECT_TRUE(wait.first());
}

TEST(QueueWait, DeletionsDuringTheReadAreApplied) {
  QueueWait wait("/p/a/3");
  wait.on_delete("/p/a/1", 21);  // arrives before the read's answer
  wait.read_done(15, 20, {"/p/a/1"});
  EXPECT_TRUE(wait.first());
}

TEST(QueueWait, OwnEntryDeletion) {
  QueueWait wait("/p/a/3");
  wait.read_done(15, 15, {"/p/a/1"});
  wait.on_delete("/p/a/3", 14);  // an earlier incarnation of our key
  EXPECT_FALSE(wait.own_entry_deleted());
  wait.on_delete("/p/a/3", 17);
  EXPECT_TRUE(wait.own_entry_deleted());
  wait.on_delete("/p/a/1", 18);
  EXPECT_FALSE(wait.first());
}

TEST(QueueWait, GapForcesANewRead) {
  QueueWait wait("/p/a/3");
  wait.read_done(15, 15, {"/p/a/1"});
  wait.on_gap();
  EXPECT_TRUE(wait.needs_read());
  wait.begin_read();
  EXPECT_FALSE(wait.needs_read());
  wait.read_done(15, 30, {});
  EXPECT_TRUE(wait.first());
}

}  // namespace
}  // namespace etcdlock::detail
