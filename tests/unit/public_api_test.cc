// Every function declared in include/ links, and the free ones do what they say.
#include <gtest/gtest.h>

#include "../consumer/every_public_function.h"
#include "etcdlock/etcdlock.h"

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

// What an object that holds nothing says, alike for the five hold types:
// nothing held, no token, no key, lock_not_held for an end or a guarded
// write, and a move that leaves both empty.
template <class Hold, class End>
void expect_holds_nothing(End end) {
  Hold hold;
  EXPECT_FALSE(hold);
  EXPECT_FALSE(hold.lost());
  EXPECT_FALSE(hold.lost_token().stop_possible());
  EXPECT_EQ(hold.fencing_token(), 0);
  if constexpr (requires { hold.keys(); }) {
    EXPECT_TRUE(hold.keys().empty());
  } else {
    EXPECT_TRUE(hold.key().empty());
  }
  std::error_code ec;
  end(hold, ec);
  EXPECT_EQ(ec, errc::lock_not_held);
  try {
    (void)hold.guarded_put("k", "v");
    ADD_FAILURE() << "guarded_put without a hold did not throw";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), errc::lock_not_held) << error.what();
  }
  try {
    (void)hold.guarded_delete("k");
    ADD_FAILURE() << "guarded_delete without a hold did not throw";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), errc::lock_not_held) << error.what();
  }
  Hold other(std::move(hold));
  hold = std::move(other);
  EXPECT_FALSE(hold);
  EXPECT_FALSE(other);
}

TEST(PublicApi, EmptyHoldsHoldNothing) {
  const auto release = [](auto& hold, std::error_code& ec) { hold.release(ec); };
  expect_holds_nothing<LockHold>(release);
  expect_holds_nothing<MultiLockHold>(release);
  expect_holds_nothing<SharedLockHold>(release);
  expect_holds_nothing<Permit>(release);
  expect_holds_nothing<Leadership>([](Leadership& leadership, std::error_code& ec) { leadership.resign(ec); });
  EXPECT_FALSE(LockHold().held());
  EXPECT_FALSE(MultiLockHold().held());
  EXPECT_FALSE(SharedLockHold().held());
  EXPECT_FALSE(Permit().held());
  EXPECT_FALSE(Leadership().is_leader());
}

}  // namespace
}  // namespace etcdlock
