// Review of the release to a known successor (0b6e42d: a lock's release hands
// over to the successor that the read confirming its note found, without a
// read of the queue): the successor leaving as the release goes out, the
// release's reply lost after the successor left, an admin removing the
// successor, and an entry without a value right behind the holder. Each held
// in the review (no overlap, no waiter left behind, no entry left).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "etcd/lost_replies.h"
#include "lock_fixture.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using detail::etcd::LostReplies;
namespace write_site = detail::etcd::write_site;

struct Occupancy {
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
};

// A thread that waits for `lock` with try_lock_for(wait); once held, it stays
// inside until release() is cued, then unlocks.
class Waiter {
 public:
  Waiter(Lock& lock, Occupancy& occupancy, std::chrono::milliseconds wait)
      : started_(Clock::now()), thread_([this, &lock, &occupancy, wait] {
          const bool got = lock.try_lock_for(wait);
          if (got) {
            if (occupancy.inside.fetch_add(1) != 0) ++occupancy.overlaps;
            held_at_ = Clock::now();
            held_ = true;
            while (!cue_) std::this_thread::sleep_for(1ms);
            occupancy.inside.fetch_sub(1);
            std::error_code ec;
            lock.unlock(ec);
            unlock_ec_ = ec;
          }
          done_ = true;
        }) {}
  ~Waiter() { cue_ = true; }
  void release() { cue_ = true; }
  bool held() const { return held_.load(); }
  bool done() const { return done_.load(); }
  Clock::time_point started() const { return started_; }
  Clock::time_point held_at() const { return held_at_; }
  std::error_code unlock_ec() const { return unlock_ec_; }

 private:
  Clock::time_point started_;
  std::atomic<bool> cue_{false};
  std::atomic<bool> held_{false};
  std::atomic<bool> done_{false};
  Clock::time_point held_at_{};
  std::error_code unlock_ec_;
  std::jthread thread_;
};

std::uint64_t requests(LockManager& manager, const std::string& call) {
  const auto requests = manager.metrics().requests;
  const auto found = requests.find(call);
  return found == requests.end() ? 0 : found->second;
}

class ReviewKnown : public LockTest {
 protected:
  ~ReviewKnown() override { LostReplies::disarm(); }

  // Five managers with a Lock of "x" each: two that pass the lock on (so
  // that the holder is admitted by a note that came with its predecessor's
  // delete), the holder, its successor, and one behind that.
  struct Participants {
    explicit Participants(ReviewKnown& test)
        : m0(test.manager()),
          m1(test.manager()),
          mh(test.manager()),
          ms(test.manager()),
          ms2(test.manager()),
          l0(m0->get_lock("x")),
          l1(m1->get_lock("x")),
          lh(mh->get_lock("x")),
          ls(ms->get_lock("x")),
          ls2(ms2->get_lock("x")) {}
    std::unique_ptr<LockManager> m0, m1, mh, ms, ms2;
    std::shared_ptr<Lock> l0, l1, lh, ls, ls2;
  };

  // p0 holds, p1 and the holder `h` wait behind it: p0 releases, then p1,
  // which waited, hands over to `h` with its note in its release's Txn.
  static void pass_to_holder(Waiter& p0, Waiter& p1, Waiter& h) {
    p0.release();
    ASSERT_TRUE(eventually([&] { return p1.held(); }));
    p1.release();
    ASSERT_TRUE(eventually([&] { return h.held(); }));
  }

  std::unique_ptr<Waiter> queue(Lock& lock, Occupancy& occupancy, std::chrono::milliseconds wait) {
    const auto before = entries("x");
    auto waiter = std::make_unique<Waiter>(lock, occupancy, wait);
    EXPECT_TRUE(eventually([&] { return entries("x") == before + 1 || waiter->held(); })) << "did not queue";
    return waiter;
  }
};

// Known successor S times out (try_lock_for) right around the holder's release;
// S2 waits behind S. The holder's release races S's leaving: whoever comes next
// holds (a next holder later than 300 ms is reported, not failed: tests check
// behaviour, not timings), and never two at once.
TEST_F(ReviewKnown, KnownSuccessorLeavingAtTheReleaseRaces) {
  Participants a(*this);
  auto &l0 = *a.l0, &l1 = *a.l1, &lh = *a.lh, &ls = *a.ls, &ls2 = *a.ls2;
  auto& mh = *a.mh;
  Occupancy occupancy;
  int known_used = 0, slow = 0;
  constexpr int kIterations = 5;
  for (int i = 0; i < kIterations; ++i) {
    auto p0 = queue(l0, occupancy, 10s);
    ASSERT_TRUE(eventually([&] { return p0->held(); }));
    auto p1 = queue(l1, occupancy, 10s);
    auto h = queue(lh, occupancy, 10s);
    const auto s_wait = 1500ms;
    auto s = queue(ls, occupancy, s_wait);
    auto s2 = queue(ls2, occupancy, 20s);
    ASSERT_NO_FATAL_FAILURE(pass_to_holder(*p0, *p1, *h));
    // Release at S's deadline give or take up to 30 ms.
    const auto offset = std::chrono::milliseconds((i * 7) % 61 - 30);
    std::this_thread::sleep_until(s->started() + s_wait + offset);
    const auto ranges = requests(mh, "Range");
    const auto cue = Clock::now();
    h->release();
    ASSERT_TRUE(eventually([&] { return h->done(); }));
    if (requests(mh, "Range") == ranges) ++known_used;
    ASSERT_TRUE(eventually([&] { return s->held() || s2->held(); }, 5s))
        << "no one holds after the release, iteration " << i;
    const auto next_at = s->held() ? s->held_at() : s2->held_at();
    const auto latency = std::chrono::duration_cast<std::chrono::milliseconds>(next_at - cue);
    if (latency > 300ms) {
      ++slow;
      std::cerr << "iteration " << i << " offset " << offset.count() << " ms: next holder after " << latency.count()
                << " ms (s held " << s->held() << ")\n";
    }
    s->release();
    ASSERT_TRUE(eventually([&] { return s->done(); }, 5s));
    ASSERT_TRUE(eventually([&] { return s2->held(); }, 5s)) << "S2 never held, iteration " << i;
    s2->release();
    ASSERT_TRUE(eventually([&] { return s2->done(); }));
    ASSERT_TRUE(eventually([&] { return entries("x") == 0; })) << "entries left: " << entries("x");
  }
  std::cerr << "known successor used in " << known_used << "/" << kIterations << ", slow " << slow << "\n";
  EXPECT_EQ(occupancy.overlaps.load(), 0);
}

// The holder knew S; S left; S2 waits. The release Txn (failure branch: S gone)
// commits but its reply is lost: no second-write note. S2 must still hold soon.
TEST_F(ReviewKnown, LostReleaseReplyAfterTheKnownSuccessorLeft) {
  Participants a(*this);
  auto &l0 = *a.l0, &l1 = *a.l1, &lh = *a.lh, &ls = *a.ls, &ls2 = *a.ls2;
  auto& mh = *a.mh;
  Occupancy occupancy;
  auto p0 = queue(l0, occupancy, 10s);
  ASSERT_TRUE(eventually([&] { return p0->held(); }));
  auto p1 = queue(l1, occupancy, 10s);
  auto h = queue(lh, occupancy, 10s);
  auto s = queue(ls, occupancy, 1500ms);
  auto s2 = queue(ls2, occupancy, 20s);
  ASSERT_NO_FATAL_FAILURE(pass_to_holder(*p0, *p1, *h));
  ASSERT_TRUE(eventually([&] { return s->done(); }, 5s));
  ASSERT_FALSE(s->held());
  ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
  std::this_thread::sleep_for(1200ms);
  LostReplies::arm(write_site::release, lh.key());
  const auto ranges = requests(mh, "Range");
  const auto cue = Clock::now();
  h->release();
  ASSERT_TRUE(eventually([&] { return h->done(); }, 10s));
  std::cerr << "holder's unlock: " << h->unlock_ec().message()
            << "; known successor used: " << (requests(mh, "Range") == ranges) << "; dropped "
            << LostReplies::dropped(write_site::release) << "\n";
  ASSERT_TRUE(eventually([&] { return s2->held(); }, 10s)) << "S2 never held";
  std::cerr << "S2 held " << std::chrono::duration_cast<std::chrono::milliseconds>(s2->held_at() - cue).count()
            << " ms after the release began\n";
  s2->release();
  ASSERT_TRUE(eventually([&] { return s2->done(); }));
  EXPECT_EQ(occupancy.overlaps.load(), 0);
  EXPECT_TRUE(eventually([&] { return entries("x") == 0; }));
}

// An admin deletes the known successor's entry (force-unlock-like raw delete)
// while the holder holds; S then re-queues behind S2. The release must admit S2
// (the one first after the delete), then S; never two at once.
TEST_F(ReviewKnown, KnownSuccessorDeletedByAnAdminRequeuesBehind) {
  Participants a(*this);
  auto &l0 = *a.l0, &l1 = *a.l1, &lh = *a.lh, &ls = *a.ls, &ls2 = *a.ls2;
  auto& mh = *a.mh;
  Occupancy occupancy;
  auto p0 = queue(l0, occupancy, 10s);
  ASSERT_TRUE(eventually([&] { return p0->held(); }));
  auto p1 = queue(l1, occupancy, 10s);
  auto h = queue(lh, occupancy, 10s);
  auto s = queue(ls, occupancy, 20s);
  auto s2 = queue(ls2, occupancy, 20s);
  ASSERT_NO_FATAL_FAILURE(pass_to_holder(*p0, *p1, *h));
  std::this_thread::sleep_for(1200ms);
  const auto s_key = ls.key();
  ASSERT_EQ(erase(raw_, s_key), 1);
  // S learns of its entry's loss only when it next reacts (H's release).
  std::this_thread::sleep_for(300ms);
  ASSERT_EQ(entries("x"), 2);
  const auto ranges = requests(mh, "Range");
  const auto cue = Clock::now();
  h->release();
  ASSERT_TRUE(eventually([&] { return h->done(); }));
  std::cerr << "known successor used: " << (requests(mh, "Range") == ranges) << "\n";
  ASSERT_TRUE(eventually([&] { return s2->held() || s->held(); }, 5s));
  EXPECT_TRUE(s2->held()) << "S (re-queued behind S2) went first";
  std::cerr << "next held after "
            << std::chrono::duration_cast<std::chrono::milliseconds>((s2->held() ? s2->held_at() : s->held_at()) - cue)
                   .count()
            << " ms\n";
  s2->release();
  ASSERT_TRUE(eventually([&] { return s->held(); }, 5s));
  s->release();
  ASSERT_TRUE(eventually([&] { return s->done() && s2->done(); }));
  EXPECT_EQ(occupancy.overlaps.load(), 0);
}

// An etcdctl-like entry (no value) right behind the holder, S behind it.
TEST_F(ReviewKnown, ValuelessEntryRightBehindTheHolder) {
  Participants a(*this);
  auto &l0 = *a.l0, &l1 = *a.l1, &lh = *a.lh, &ls = *a.ls;
  Occupancy occupancy;
  auto p0 = queue(l0, occupancy, 10s);
  ASSERT_TRUE(eventually([&] { return p0->held(); }));
  auto p1 = queue(l1, occupancy, 10s);
  auto h = queue(lh, occupancy, 10s);
  const std::string raw_key = prefix_ + "/x/7fffffff00000001";
  put(raw_, raw_key, "");
  auto s = queue(ls, occupancy, 20s);
  ASSERT_NO_FATAL_FAILURE(pass_to_holder(*p0, *p1, *h));
  std::this_thread::sleep_for(1200ms);
  h->release();
  ASSERT_TRUE(eventually([&] { return h->done(); }));
  std::this_thread::sleep_for(500ms);
  EXPECT_FALSE(s->held()) << "S held while the valueless entry was first";
  ASSERT_EQ(erase(raw_, raw_key), 1);
  ASSERT_TRUE(eventually([&] { return s->held(); }, 5s));
  s->release();
  ASSERT_TRUE(eventually([&] { return s->done(); }));
  EXPECT_EQ(occupancy.overlaps.load(), 0);
}

}  // namespace
}  // namespace etcdlock::testing
