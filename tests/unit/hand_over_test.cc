#include "hand_over.h"

#include <gtest/gtest.h>

namespace etcdlock::detail {
namespace {

TEST(HandOverNote, RoundTrip) {
  const QueueEntry entry{"/p/jobs/694d7c5c8a1f2b04", 1234};
  const auto decoded = decode_note(encode_note(entry));
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->key, entry.key);
  EXPECT_EQ(decoded->revision, 1234);
}

TEST(HandOverNote, KeysWithSpacesSurvive) {
  const QueueEntry entry{"/p/a b/1", 7};
  EXPECT_EQ(decode_note(encode_note(entry))->key, "/p/a b/1");
}

TEST(HandOverNote, ForeignTextIsNoNote) {
  for (const char* text : {"", "abc", "12", "12x /k", "-3 /k", "0 /k", " /k"}) {
    EXPECT_FALSE(decode_note(text)) << text;
  }
}

}  // namespace
}  // namespace etcdlock::detail
