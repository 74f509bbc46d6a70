#include "session/inbox.h"

#include <gtest/gtest.h>

namespace etcdlock::detail {
namespace {

TEST(HandOverNote, RoundTrip) {
  const Note note{{"/p/jobs/694d7c5c8a1f2b04", 1234}, 3};
  const auto decoded = decode_note(encode_note(note));
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->entry.key, note.entry.key);
  EXPECT_EQ(decoded->entry.revision, 1234);
  EXPECT_EQ(decoded->limit, 3);
}

TEST(HandOverNote, KeysWithSpacesSurvive) {
  const Note note{{"/p/a b/1", 7}, 1};
  EXPECT_EQ(decode_note(encode_note(note))->entry.key, "/p/a b/1");
}

TEST(HandOverNote, ForeignTextIsNoNote) {
  for (const char* text : {"", "abc", "12", "12x /k", "-3 1 /k", "0 1 /k", " /k", "12 /k", "12 0 /k", "12 x /k"}) {
    EXPECT_FALSE(decode_note(text)) << text;
  }
}

}  // namespace
}  // namespace etcdlock::detail
