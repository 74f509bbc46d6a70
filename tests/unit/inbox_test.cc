#include "session/inbox.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

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

TEST(HandOverNote, SeveralNotesInOneValue) {
  const std::vector<Note> notes{{{"/p/a/1", 7}, 1}, {{"/p/b c/1", 7}, 1}, {{"/p/s/2", 9}, 4}};
  const auto decoded = decode_notes(encode_notes(notes));
  ASSERT_EQ(decoded.size(), 3u);
  for (std::size_t i = 0; i < notes.size(); ++i) {
    EXPECT_EQ(decoded[i].entry.key, notes[i].entry.key);
    EXPECT_EQ(decoded[i].entry.revision, notes[i].entry.revision);
    EXPECT_EQ(decoded[i].limit, notes[i].limit);
  }
  // One note is a value of one note, as written before notes were joined.
  EXPECT_EQ(encode_notes(std::span(notes).first(1)), encode_note(notes[0]));
  EXPECT_EQ(decode_notes(encode_note(notes[1])).size(), 1u);
}

TEST(HandOverNote, ForeignPartsAreSkipped) {
  // Built by appends: GCC 12 warns falsely (-Wstringop-overflow) on the sum
  // of string literals once the headers come precompiled.
  std::string notes = "abc";
  notes += '\0';
  notes += "12 1 /p/a/1";
  notes.append(2, '\0');
  notes += 'x';
  const auto decoded = decode_notes(notes);
  ASSERT_EQ(decoded.size(), 1u);
  EXPECT_EQ(decoded[0].entry.key, "/p/a/1");
  EXPECT_TRUE(decode_notes("").empty());
}

}  // namespace
}  // namespace etcdlock::detail
