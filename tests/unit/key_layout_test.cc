#include "keys/key_layout.h"
#include "base/text.h"
#include "keys/names.h"

#include <gtest/gtest.h>

#include <string>

#include "etcdlock/error.h"

namespace etcdlock::detail {
namespace {

errc name_error(std::string_view name) {
  try {
    validate_name(name);
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("lock name"), std::string::npos) << error.what();
    return error.value();
  }
  return errc{};
}

TEST(KeySpace, AcceptsOrdinaryNames) {
  for (const char* name : {"a", "jobs", "a/b", "migrations/2026-11", "名前", "x.y-z_1"}) {
    EXPECT_NO_THROW(validate_name(name)) << name;
  }
}

TEST(KeySpace, RejectsBadNamesWithInvalidKey) {
  const std::string nul("a\0b", 3);
  const std::string too_long(kMaxNameBytes + 1, 'x');
  const std::string not_utf8("\xff\xfe", 2);
  for (const std::string& name : {std::string(), nul, std::string("/a"), std::string("a/"), std::string("/"),
                                  std::string("a//b"), too_long, not_utf8}) {
    EXPECT_EQ(name_error(name), errc::invalid_key) << quote_value(name);
  }
  EXPECT_NO_THROW(validate_name(std::string(kMaxNameBytes, 'x')));
}

TEST(KeySpace, MessageNamesTheBadValue) {
  try {
    validate_name("a//b");
    FAIL() << "no exception";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("\"a//b\""), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("INVALID_KEY"), std::string::npos) << error.what();
  }
}

TEST(KeySpace, PrefixMayStartWithSlash) {
  EXPECT_NO_THROW(validate_prefix("/etcdlock"));
  EXPECT_NO_THROW(validate_prefix("etcdlock/app"));
  for (const char* prefix : {"", "/", "//a", "/a/", "a//b"}) {
    EXPECT_THROW(validate_prefix(prefix), Error) << prefix;
  }
}

TEST(KeySpace, QueueKeysFollowEtcdsLayout) {
  const auto dir = queue_dir("/etcdlock", "jobs");
  EXPECT_EQ(dir, "/etcdlock/jobs/");
  EXPECT_EQ(queue_key(dir, 0x694d7c5c8a1f2b04), "/etcdlock/jobs/694d7c5c8a1f2b04");
  EXPECT_EQ(queue_key(dir, 10), "/etcdlock/jobs/a");
}

TEST(KeySpace, LongerNamesAreNotQueueEntries) {
  const auto dir = queue_dir("/p", "a");
  EXPECT_TRUE(is_own_entry(dir, "/p/a/694d"));
  EXPECT_FALSE(is_own_entry(dir, "/p/a/b/694d"));
  EXPECT_FALSE(is_own_entry(dir, "/p/a/"));
  EXPECT_FALSE(is_own_entry(dir, "/p/ab/694d"));
}

TEST(KeySpace, InboxesAreOutsideEveryQueue) {
  const auto inbox = inbox_key("/p", 0xabc);
  EXPECT_EQ(inbox, std::string("/p/\0inbox/abc", 13));
  EXPECT_FALSE(is_own_entry(queue_dir("/p", "inbox"), inbox));
  EXPECT_TRUE(is_inbox_key_for("/p/jobs/", inbox));
  EXPECT_TRUE(is_inbox_key_for("/p/a/b/", inbox));
  EXPECT_FALSE(is_inbox_key_for("/q/jobs/", inbox)) << "a note only within the lock's own prefix";
  EXPECT_FALSE(is_inbox_key_for("/p/jobs/", "/p/config")) << "a value must not direct notes to any key";
  EXPECT_FALSE(is_inbox_key_for("/p/jobs/", std::string("/p/\0inbox/xyz", 13)));
  EXPECT_FALSE(is_inbox_key_for("/p/jobs/", std::string("/p/\0inbox/", 10)));
}

TEST(KeySpace, AnInboxOfANestedPrefixIsNoEntryOfTheOuterName) {
  // The manager on "/p/jobs" has its inbox under the directory of "jobs" on "/p".
  const auto inbox = inbox_key("/p/jobs", 0xabc);
  EXPECT_TRUE(inbox.starts_with(queue_dir("/p", "jobs")));
  EXPECT_TRUE(is_inbox_key(inbox));
  EXPECT_TRUE(is_inbox_key(inbox_key("/p", 0xabc)));
  EXPECT_FALSE(is_inbox_key("/p/jobs/694d"));
  EXPECT_FALSE(is_inbox_key("/p/jobs/inbox/694d"));
}

TEST(KeySpace, PrefixRangeEnd) {
  EXPECT_EQ(prefix_range_end("/p/a/"), "/p/a0");
  EXPECT_EQ(prefix_range_end(std::string("a\xff", 2)), "b");
  EXPECT_EQ(prefix_range_end(std::string("\xff", 1)), std::string(1, '\0'));
}

TEST(KeySpace, QuotedEscapesAndCuts) {
  EXPECT_EQ(quote_value("a\nb"), "\"a\\x0ab\"");
  EXPECT_EQ(quote_value(std::string("\xff", 1)), "\"\\xff\"");
  EXPECT_EQ(quote_value("名"), "\"名\"");
  EXPECT_NE(quote_value(std::string(2048, 'x')).find("(2048 bytes)"), std::string::npos);
}

}  // namespace
}  // namespace etcdlock::detail
