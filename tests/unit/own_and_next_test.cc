// own_and_next: what the read that confirms a hand-over note tells about our
// own entry and the one right behind it (queue/hand_over.h).
#include <gtest/gtest.h>

#include <string>

#include "keys/holder_value.h"
#include "keys/key_layout.h"
#include "queue/hand_over.h"

namespace etcdlock::detail {
namespace {

const QueueDir kQueue{"/p/x/"};
const QueueEntry kOwn{"/p/x/a1", 100};

std::string value_with_inbox(const std::string& inbox) {
  HolderValue value;
  value.owner = "test";
  value.inbox = inbox;
  return encode_holder_value(value);
}

void add(pb::RangeResponse& read, const std::string& key, std::int64_t revision, const std::string& value = {},
         std::int64_t lease = 7) {
  auto* kv = read.add_kvs();
  kv->set_key(key);
  kv->set_create_revision(revision);
  kv->set_value(value);
  kv->set_lease(lease);
}

TEST(OwnAndNext, FindsOwnEntryAndTheOneBehindIt) {
  pb::RangeResponse read;
  add(read, kOwn.key, kOwn.revision);
  add(read, "/p/x/b2", 105, value_with_inbox(inbox_key("/p", 9)), 11);
  add(read, "/p/x/c3", 107, value_with_inbox(inbox_key("/p", 10)));
  const auto found = own_and_next(kQueue, kOwn, read);
  ASSERT_EQ(found.own_stands, true);
  ASSERT_TRUE(found.next);
  EXPECT_EQ(found.next->entry.key, "/p/x/b2");
  EXPECT_EQ(found.next->entry.revision, 105);
  EXPECT_EQ(found.next->inbox, inbox_key("/p", 9));
  EXPECT_EQ(found.next->lease, 11);
}

TEST(OwnAndNext, NoNoteToAnyoneBehindAnEntryThatTakesNone) {
  pb::RangeResponse read;
  add(read, kOwn.key, kOwn.revision);
  add(read, "/p/x/b2", 105);  // etcdctl's: no value of ours
  add(read, "/p/x/c3", 107, value_with_inbox(inbox_key("/p", 10)));
  const auto found = own_and_next(kQueue, kOwn, read);
  EXPECT_EQ(found.own_stands, true);
  EXPECT_FALSE(found.next);
}

TEST(OwnAndNext, NoNoteToALongerNamesEntryOrAnInboxOutsideTheQueuesPrefix) {
  pb::RangeResponse nested;
  add(nested, kOwn.key, kOwn.revision);
  add(nested, "/p/x/y/b2", 105, value_with_inbox(inbox_key("/p", 9)));  // "x/y" does not wait for "x"
  EXPECT_FALSE(own_and_next(kQueue, kOwn, nested).next);
  pb::RangeResponse foreign;
  add(foreign, kOwn.key, kOwn.revision);
  add(foreign, "/p/x/b2", 105, value_with_inbox(inbox_key("/q", 9)));
  EXPECT_FALSE(own_and_next(kQueue, kOwn, foreign).next);
}

TEST(OwnAndNext, InboxKeysAreNoEntries) {
  const QueueDir outer{"/p/"};
  const QueueEntry own{"/p/a1", 100};
  pb::RangeResponse read;
  add(read, own.key, own.revision);
  add(read, inbox_key("/p", 3), 104, "note");
  add(read, "/p/b2", 105, value_with_inbox(inbox_key("/p", 9)));
  const auto found = own_and_next(outer, own, read);
  EXPECT_EQ(found.own_stands, true);
  ASSERT_TRUE(found.next);
  EXPECT_EQ(found.next->entry.key, "/p/b2");
}

TEST(OwnAndNext, NoSuccessorBehindAnotherKeyOfOurOwnRevision) {
  // A multi-lock's entries of nested names share one revision: when ours
  // goes, the other stays ahead of the next entry.
  pb::RangeResponse read;
  add(read, "/p/x/y/a1", kOwn.revision);
  add(read, kOwn.key, kOwn.revision);
  add(read, "/p/x/b2", 105, value_with_inbox(inbox_key("/p", 9)));
  auto found = own_and_next(kQueue, kOwn, read);
  EXPECT_EQ(found.own_stands, true);
  EXPECT_FALSE(found.next);

  pb::RangeResponse after;  // the other key sorted after ours
  add(after, kOwn.key, kOwn.revision);
  add(after, "/p/x/y/a1", kOwn.revision);
  add(after, "/p/x/b2", 105, value_with_inbox(inbox_key("/p", 9)));
  found = own_and_next(kQueue, kOwn, after);
  EXPECT_EQ(found.own_stands, true);
  EXPECT_FALSE(found.next);
}

TEST(OwnAndNext, OwnEntryGoneOrNotInThePage) {
  pb::RangeResponse gone;
  add(gone, "/p/x/b2", 105, value_with_inbox(inbox_key("/p", 9)));
  const auto found = own_and_next(kQueue, kOwn, gone);
  EXPECT_EQ(found.own_stands, false);
  EXPECT_FALSE(found.next);

  pb::RangeResponse recreated;  // the same key, created again: not our entry
  add(recreated, kOwn.key, 120);
  EXPECT_EQ(own_and_next(kQueue, kOwn, recreated).own_stands, false);

  pb::RangeResponse full;  // a page of keys of our revision, and more
  add(full, "/p/x/y/a1", kOwn.revision);
  add(full, "/p/x/z/a1", kOwn.revision);
  add(full, "/p/x/w/a1", kOwn.revision);
  full.set_more(true);
  EXPECT_FALSE(own_and_next(kQueue, kOwn, full).own_stands) << "unknown: read the own key alone";
}

}  // namespace
}  // namespace etcdlock::detail
