#include "etcdlock/error.h"

#include <gtest/gtest.h>

#include <system_error>
#include <type_traits>
#include <utility>

namespace etcdlock {
namespace {

TEST(Error, CodesCompareWithErrc) {
  const Error error(errc::lock_timeout, "lock \"x\" was not acquired in time");
  EXPECT_EQ(error.code(), errc::lock_timeout);
  EXPECT_EQ(error.value(), errc::lock_timeout);
  EXPECT_EQ(&error.code().category(), &error_category());
  EXPECT_STREQ(error_category().name(), "etcdlock");
  EXPECT_NE(std::string(error.what()).find("LOCK_TIMEOUT"), std::string::npos);
  EXPECT_NE(std::string(error.what()).find("\"x\""), std::string::npos);
}

TEST(Error, TextSaysEachPartOnce) {
  EXPECT_STREQ(Error(errc::closed, "the lock manager for prefix \"/p\" is closed").what(),
               "CLOSED: the lock manager for prefix \"/p\" is closed");
  EXPECT_STREQ(Error(errc::unavailable, "").what(), "UNAVAILABLE: etcd is unavailable");
  // Passed on as the message of another Error of the same code.
  const Error inner(errc::closed, "the lock manager is closed");
  EXPECT_STREQ(Error(errc::closed, inner.what()).what(), "CLOSED: the lock manager is closed");
  const Error copy = inner;
  EXPECT_STREQ(copy.what(), inner.what());
}

TEST(Error, CodeNames) {
  EXPECT_EQ(to_string(errc::lock_timeout), "LOCK_TIMEOUT");
  EXPECT_EQ(to_string(errc::lock_not_held), "LOCK_NOT_HELD");
  EXPECT_EQ(to_string(errc::lock_already_held), "LOCK_ALREADY_HELD");
  EXPECT_EQ(to_string(errc::lock_expired), "LOCK_EXPIRED");
  EXPECT_EQ(to_string(errc::invalid_key), "INVALID_KEY");
}

TEST(Error, ErrorCodeConventions) {
  std::error_code ec = errc::lock_not_held;  // is_error_code_enum
  EXPECT_TRUE(ec);
  EXPECT_EQ(ec, make_error_code(errc::lock_not_held));
  EXPECT_NE(ec, make_error_code(errc::lock_expired));
  EXPECT_FALSE(ec.message().empty());
  EXPECT_NE(error_category().message(999).find("999"), std::string::npos);
}

// Copies share the text (an exception's copy must not throw); a move is a
// copy, so the Error moved from still says what it is.
TEST(Error, CopiesAndMovesKeepTheText) {
  static_assert(std::is_nothrow_copy_constructible_v<Error>);
  Error original(errc::lock_timeout, "lock \"x\" was not acquired");
  const Error copy = original;
  Error moved = std::move(original);
  EXPECT_STREQ(copy.what(), "LOCK_TIMEOUT: lock \"x\" was not acquired");
  EXPECT_STREQ(moved.what(), copy.what());
  EXPECT_STREQ(original.what(), copy.what());  // NOLINT(bugprone-use-after-move): the point of the test
  EXPECT_EQ(moved.code(), errc::lock_timeout);
}

}  // namespace
}  // namespace etcdlock
