// The deadlock view without etcd: from the entries of one read of a prefix to
// the cycles of leases that wait for one another.
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <string>
#include <vector>

#include "base/text.h"
#include "keys/holder_value.h"
#include "observe/deadlocks.h"

namespace etcdlock::detail {
namespace {

using Mode = HolderValue::Side;

// A read of the prefix "/p", built entry by entry in the order etcd created them.
class Read {
 public:
  // An etcdlock entry of `lease` (owned by "owner-<lease hex>") in `name`'s queue.
  Read& enqueue(std::int64_t lease, const std::string& name, Mode side = Mode::none, std::int64_t limit = 0) {
    HolderValue value{"owner-" + hex_id(lease), "host", 1, {}, "0.1.0", ""};
    value.side = side;
    value.limit = limit;
    return add(lease, name, encode_holder_value(value), next_revision_++);
  }
  // An entry of etcdctl lock or Go's Mutex: no etcdlock value.
  Read& foreign(std::int64_t lease, const std::string& name) { return add(lease, name, "", next_revision_++); }
  // One Txn enqueuing `lease` in each of `names`: one create revision.
  Read& enqueue_all(std::int64_t lease, const std::vector<std::string>& names) {
    const auto revision = next_revision_++;
    HolderValue value{"owner-" + hex_id(lease), "host", 1, {}, "0.1.0", ""};
    for (const auto& name : names) add(lease, name, encode_holder_value(value), revision);
    return *this;
  }

  std::vector<Deadlock> deadlocks() const { return find_deadlocks("/p", entries()); }
  // The same read handed over in reverse order.
  std::vector<Deadlock> deadlocks_reversed() const {
    auto reversed = entries();
    std::reverse(reversed.begin(), reversed.end());
    return find_deadlocks("/p", reversed);
  }

 private:
  Read& add(std::int64_t lease, const std::string& name, std::string value, std::int64_t revision) {
    // A lease's second entry in one queue takes a suffix, as semaphores and readers do.
    std::string key = "/p/" + name + "/" + hex_id(lease);
    const auto same =
        std::count_if(keys_.begin(), keys_.end(), [&](const std::string& k) { return k.starts_with(key); });
    if (same > 0) key += "-" + std::to_string(same);
    keys_.push_back(std::move(key));
    values_.push_back(std::move(value));
    leases_.push_back(lease);
    revisions_.push_back(revision);
    return *this;
  }
  std::vector<PrefixEntry> entries() const {
    std::vector<PrefixEntry> all;
    for (std::size_t i = 0; i < keys_.size(); ++i) all.push_back({keys_[i], values_[i], leases_[i], revisions_[i]});
    return all;
  }

  std::deque<std::string> keys_, values_;  // stable addresses for the views
  std::vector<std::int64_t> leases_, revisions_;
  std::int64_t next_revision_ = 10;
};

// "lease:holds>waits_for" per member, holders of `holds` marked with '*'.
std::string describe(const Deadlock& deadlock) {
  std::string text;
  for (const auto& member : deadlock.members) {
    if (!text.empty()) text += " ";
    text += hex_id(member.lease_id) + ":" + member.holds + (member.holding ? "*" : "") + ">" + member.waits_for;
  }
  return text;
}

std::vector<std::string> describe(const std::vector<Deadlock>& deadlocks) {
  std::vector<std::string> texts;
  for (const auto& deadlock : deadlocks) texts.push_back(describe(deadlock));
  return texts;
}

using Cycles = std::vector<std::string>;

TEST(Deadlocks, AQueueAloneIsNoCycle) {
  Read read;
  read.enqueue(0xa, "x").enqueue(0xb, "x").enqueue(0xc, "x").enqueue(0xb, "y");
  EXPECT_EQ(describe(read.deadlocks()), Cycles{});
  EXPECT_EQ(describe(Read().deadlocks()), Cycles{});
}

TEST(Deadlocks, TwoManagersThatTookTwoLocksInOppositeOrders) {
  Read read;
  read.enqueue(0xb, "y").enqueue(0xa, "x").enqueue(0xa, "y").enqueue(0xb, "x");
  const auto found = read.deadlocks();
  EXPECT_EQ(describe(found), Cycles{"a:x*>y b:y*>x"});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].members[0].owner, "owner-a");
  EXPECT_EQ(found[0].members[1].owner, "owner-b");
  EXPECT_EQ(describe(read.deadlocks_reversed()), describe(found)) << "the order of the read does not matter";
}

TEST(Deadlocks, ThreeManagersInACircleAndOneStuckBehindThem) {
  Read read;
  read.enqueue(0xc, "z").enqueue(0xb, "y").enqueue(0xa, "x");
  read.enqueue(0xa, "y").enqueue(0xb, "z").enqueue(0xc, "x");
  read.enqueue(0xd, "x");                    // waits behind the cycle, but is not part of it
  read.enqueue(0xe, "w").enqueue(0xf, "w");  // an ordinary queue beside it
  EXPECT_EQ(describe(read.deadlocks()), Cycles{"a:x*>y b:y*>z c:z*>x"});
}

TEST(Deadlocks, TwoSeparateCyclesComeInTheOrderOfTheirLowestLease) {
  Read read;
  read.enqueue(0x20, "p").enqueue(0x21, "q").enqueue(0x20, "q").enqueue(0x21, "p");
  read.enqueue(0x10, "x").enqueue(0x11, "y").enqueue(0x10, "y").enqueue(0x11, "x");
  EXPECT_EQ(describe(read.deadlocks()), (Cycles{"10:x*>y 11:y*>x", "20:p*>q 21:q*>p"}));
}

TEST(Deadlocks, AWaiterAheadInTheQueueIsWaitedForToo) {
  // b waits in x ahead of a: a waits for b as well as for c, x's holder.
  Read read;
  read.enqueue(0xc, "x").enqueue(0xa, "y").enqueue(0xb, "x").enqueue(0xa, "x").enqueue(0xb, "y");
  EXPECT_EQ(describe(read.deadlocks()), Cycles{"a:y*>x b:x>y"});
}

TEST(Deadlocks, ASemaphoreWaiterIsStuckOnlyWhenEveryPermitIs) {
  Read read;
  read.enqueue(0xa, "pool", Mode::none, 2).enqueue(0xc, "pool", Mode::none, 2);
  read.enqueue(0xb, "x").enqueue(0xb, "pool", Mode::none, 2).enqueue(0xa, "x");
  EXPECT_EQ(describe(read.deadlocks()), Cycles{}) << "c waits for nothing: its release admits b";
  read.enqueue(0xc, "x");
  EXPECT_EQ(describe(read.deadlocks()), Cycles{"a:pool*>x b:x*>pool"});
}

TEST(Deadlocks, AReaderWaitsForTheWritersAheadOnly) {
  Read read;
  read.enqueue(0xa, "table", Mode::read).enqueue(0xc, "table", Mode::read);
  read.enqueue(0xb, "x").enqueue(0xb, "table", Mode::write);
  read.enqueue(0xd, "table", Mode::read);  // behind the writer
  read.enqueue(0xa, "x");
  EXPECT_EQ(describe(read.deadlocks()), Cycles{"a:table*>x b:x*>table"});
  // d waits behind b's write: stuck, not in the cycle. A reader ahead of a
  // waiting writer holds back no other reader.
  Read readers;
  readers.enqueue(0xa, "table", Mode::read).enqueue(0xb, "x").enqueue(0xb, "table", Mode::read).enqueue(0xa, "x");
  EXPECT_EQ(describe(readers.deadlocks()), Cycles{});
}

TEST(Deadlocks, ForeignEntriesTakePartByTheirLease) {
  Read read;
  read.foreign(0xf, "x").enqueue(0xa, "y").foreign(0xf, "y").enqueue(0xa, "x");
  const auto found = read.deadlocks();
  EXPECT_EQ(describe(found), Cycles{"a:y*>x f:x*>y"});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].members[1].owner, "unknown");
}

TEST(Deadlocks, AKeyWithoutALeaseIsNoMember) {
  Read read;
  read.foreign(0, "x").enqueue(0xa, "y").enqueue(0xa, "x").foreign(0, "y");
  EXPECT_EQ(describe(read.deadlocks()), Cycles{});
}

TEST(Deadlocks, AManagersOwnEntriesNeverHoldItBack) {
  // Two threads of one manager: one holds the only permit, the other waits for it.
  Read read;
  read.enqueue(0xa, "pool", Mode::none, 1).enqueue(0xa, "pool", Mode::none, 1).enqueue(0xb, "pool", Mode::none, 1);
  EXPECT_EQ(describe(read.deadlocks()), Cycles{});
}

TEST(Deadlocks, EntriesTakenTogetherWaitOnlyForOlderOnesAndMakeNoCycle) {
  // Multi-locks: one Txn enqueues a lease in several names at one revision.
  Read read;
  read.enqueue(0x1, "x");  // an older holder, waiting for nothing
  read.enqueue_all(0xa, {"x", "y"}).enqueue_all(0xb, {"y", "x"}).enqueue_all(0xc, {"z", "y", "x"});
  read.enqueue_all(0xd, {"z", "w"});
  EXPECT_EQ(describe(read.deadlocks()), Cycles{});
  EXPECT_EQ(describe(read.deadlocks_reversed()), Cycles{});
}

TEST(Deadlocks, ALockTakenOneByOneCanStillCloseACycleWithEntriesTakenTogether) {
  Read read;
  read.enqueue(0xa, "x").enqueue_all(0xb, {"x", "y"}).enqueue(0xa, "y");
  EXPECT_EQ(describe(read.deadlocks()), Cycles{"a:x*>y b:y*>x"});
}

TEST(Deadlocks, KeysThatAreNoQueueEntriesAreLeftOut) {
  Read read;
  read.enqueue(0xa, "x").enqueue(0xb, "y").enqueue(0xa, "y").enqueue(0xb, "x");
  std::vector<PrefixEntry> entries{{std::string_view("/p/\0inbox/1", 11), "", 0xa, 1}, {"/other/x/b", "", 0xb, 2}};
  EXPECT_EQ(find_deadlocks("/p", entries).size(), 0u);
  EXPECT_EQ(read.deadlocks().size(), 1u);
}

// The queue of "x" holds the entries of "x/y" too, as in etcd's recipe
// (keys/key_layout.h): an entry of "x" waits for an older entry of "x/y".
TEST(Deadlocks, AnOlderEntryOfALongerNameHoldsTheNameBack) {
  Read read;
  read.enqueue(0xa, "x/y").enqueue(0xb, "z").enqueue(0xb, "x").enqueue(0xa, "z");
  EXPECT_EQ(describe(read.deadlocks()), Cycles{"a:x*>z b:z*>x"});
  EXPECT_EQ(describe(read.deadlocks_reversed()), describe(read.deadlocks()));
}

// ... and never the reverse: "x/y" waits in its own queue only.
TEST(Deadlocks, ALongerNameNeverWaitsForTheName) {
  Read read;
  read.enqueue(0xa, "x").enqueue(0xb, "z").enqueue(0xb, "x/y").enqueue(0xa, "z");
  EXPECT_EQ(describe(read.deadlocks()), Cycles{});
}

}  // namespace
}  // namespace etcdlock::detail
