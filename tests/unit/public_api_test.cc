// Every function declared in include/ links, and the free ones do what they say.
#include <gtest/gtest.h>

#include "../consumer/every_public_function.h"

namespace etcdlock {
namespace {

TEST(PublicApi, EveryDeclaredFunctionLinks) { etcdlock_consumer::refer_to_every_public_function(); }

TEST(PublicApi, FreeFunctions) {
  EXPECT_EQ(to_string(SessionState::healthy), "healthy");
  EXPECT_EQ(to_string(SessionState::suspect), "suspect");
  EXPECT_EQ(to_string(SessionState::lost), "lost");
  EXPECT_EQ(to_string(SessionState::closed), "closed");
  EXPECT_EQ(to_string(LogLevel::warning), "warning");
  EXPECT_EQ(lease_hex(0x694d7c5c8a1f2b04), "694d7c5c8a1f2b04");
  EXPECT_EQ(loss_margin(std::chrono::seconds(30)), std::chrono::seconds(5));
  EXPECT_EQ(loss_margin(std::chrono::seconds(5)), std::chrono::seconds(1));
  EXPECT_EQ(loss_margin(std::chrono::seconds(1)), std::chrono::milliseconds(250));
  EXPECT_EQ(loss_margin(std::chrono::hours(1)), std::chrono::seconds(5));
}

}  // namespace
}  // namespace etcdlock
