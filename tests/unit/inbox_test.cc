#include "session/inbox.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "keys/key_layout.h"

namespace etcdlock::detail {
namespace {

TEST(HandOverNote, RoundTrip) {
  const Note note{{"/p/jobs/694d7c5c8a1f2b04", 1234}, 3, {}};
  const auto decoded = decode_note(encode_note(note));
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->entry.key, note.entry.key);
  EXPECT_EQ(decoded->entry.revision, 1234);
  EXPECT_EQ(decoded->limit, 3);
}

TEST(HandOverNote, KeysWithSpacesSurvive) {
  const Note note{{"/p/a b/1", 7}, 1, {}};
  EXPECT_EQ(decode_note(encode_note(note))->entry.key, "/p/a b/1");
}

TEST(HandOverNote, ForeignTextIsNoNote) {
  for (const char* text : {"", "abc", "12", "12x /k", "-3 1 /k", "0 1 /k", " /k", "12 /k", "12 0 /k", "12 x /k"}) {
    EXPECT_FALSE(decode_note(text)) << text;
  }
}

TEST(HandOverNote, SeveralNotesInOneValue) {
  const std::vector<Note> notes{{{"/p/a/1", 7}, 1, {}}, {{"/p/b c/1", 7}, 1, {}}, {{"/p/s/2", 9}, 4, {}}};
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

TEST(HandOverNote, TheEntriesNextInLineTravelWithTheirNote) {
  // Inbox keys hold a NUL, as the notes' separator.
  const Note first{
      {"/p/a/1", 7}, 1, {{{"/p/a/2 b", 9}, inbox_key("/p", 2), 22}, {{"/p/a/3", 12}, inbox_key("/p x", 3), 23}}};
  const Note second{{"/p/b/1", 8}, 1, {}};
  const Note third{{"/p/c/1", 8}, 1, {{{"/p/c/4", 15}, inbox_key("/p", 4), 24}}};
  const std::vector<Note> notes{first, second, third};
  const auto decoded = decode_notes(encode_notes(notes));
  ASSERT_EQ(decoded.size(), 3u);
  for (std::size_t i = 0; i < notes.size(); ++i) {
    EXPECT_EQ(decoded[i].entry.key, notes[i].entry.key);
    ASSERT_EQ(decoded[i].next_in_line.size(), notes[i].next_in_line.size()) << i;
    for (std::size_t k = 0; k < notes[i].next_in_line.size(); ++k) {
      EXPECT_EQ(decoded[i].next_in_line[k].entry.key, notes[i].next_in_line[k].entry.key);
      EXPECT_EQ(decoded[i].next_in_line[k].entry.revision, notes[i].next_in_line[k].entry.revision);
      EXPECT_EQ(decoded[i].next_in_line[k].inbox, notes[i].next_in_line[k].inbox);
      EXPECT_EQ(decoded[i].next_in_line[k].lease, notes[i].next_in_line[k].lease);
    }
  }
  // No piece of the line is a note: a decoder that knows no line (one of an
  // earlier version, on the same inbox) splits the value at each NUL, takes
  // the notes and skips the rest.
  const auto value = encode_notes(notes);
  std::string_view text = value;
  std::vector<std::string> keys;
  for (;;) {
    const auto end = text.find('\0');
    if (const auto note = decode_note(text.substr(0, end))) keys.push_back(note->entry.key);
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"/p/a/1", "/p/b/1", "/p/c/1"}));
}

TEST(HandOverNote, APartOfTheLineWithoutItsNoteOrMalformedIsSkipped) {
  // A line's part right after a foreign part belongs to no note.
  std::string text = "abc";
  text += '\0';
  text += "+9 22 6 5 /p/a/2/p/i2";
  const char* const bad_parts[] = {"+9 22 60 5 /p/a/2/p/i2", "+9 22 6 50 /p/a/2/p/i2", "+0 22 6 5 /p/a/2/p/i2",
                                   "+9 22 6 5 /p/a/2",       "+9 x 6 5 /p/a/2/p/i2",   "+9 22 0 5 /p/i2",
                                   "+9 22 6 0 /p/a/2",       "+9 22 6 5 /p/a/2/p/i2x"};
  for (const char* bad : bad_parts) {
    text += '\0';
    text += "7 1 /p/a/1";
    text += '\0';
    text += bad;
  }
  const auto decoded = decode_notes(text);
  ASSERT_EQ(decoded.size(), std::size(bad_parts));
  for (const auto& note : decoded) {
    EXPECT_EQ(note.entry.key, "/p/a/1");
    EXPECT_TRUE(note.next_in_line.empty());
  }
}

}  // namespace
}  // namespace etcdlock::detail
