// Review of "Names that nest" (every key under a name's directory counts in
// its queue), against real etcd: faults that the change introduced or exposed.
#include <gtest/gtest.h>

#include <algorithm>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <stop_token>
#include <thread>

#include "expect_error.h"
#include "lock_fixture.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;

bool is_inbox(const std::string& key) { return key.find(std::string_view("\0inbox/", 7)) != std::string::npos; }

class ReviewNested : public LockTest {
 protected:
  std::unique_ptr<LockManager> manager_on(const std::string& prefix) {
    auto with_prefix = options();
    with_prefix.prefix = prefix;
    return std::make_unique<LockManager>(with_prefix);
  }

  // `holder` holds "x", a waiter of `waiter` (a manager on `waiter_prefix`)
  // queues behind it, and the release hands over with a note into the inbox
  // of `waiter` (creating its key); the waiter then unlocks. The inbox key
  // stays for about a second (HandOverInbox::kNoteLinger) once no waiter of
  // `waiter` expects a note.
  void note_to(LockManager& waiter, LockManager& holder, const std::string& waiter_prefix) {
    auto held = holder.get_lock("x");
    held->lock();
    auto waiting = waiter.get_lock("x");
    std::jthread thread([&] {
      waiting->lock();
      // The holder never waited, so its note follows its delete in a second
      // write, guarded by our entry: the waiter may be in by its own read
      // first (under ThreadSanitizer it was), and an unlock before the note
      // lands leaves no note and no inbox key. Hold until the note is there.
      EXPECT_TRUE(eventually([&] { return std::ranges::any_of(keys_under(raw_, waiter_prefix + "/"), is_inbox); }))
          << "no hand-over note came";
      waiting->unlock();
    });
    ASSERT_TRUE(eventually([&] { return waiter.info("x").has_value() && waiter.info("x")->queue.size() == 2; }));
    held->unlock();
  }
};

// A manager on the nested prefix "P/jobs" has its inbox at
// "P/jobs/\0inbox/<id>", under the directory of the lock "jobs" on "P". A
// note creates that key, and the inbox deletes it only once none of its
// manager's waiters has expected a note for a second. Since the change the
// lock "jobs" waits for it as for a holder: while the inner manager has any
// waiter (here one that waits as long as another name is held), "jobs" is
// never acquired, though no entry of "jobs", nor any older entry of a longer
// name, holds it.
TEST_F(ReviewNested, AnInboxKeyOfANestedPrefixNeverHoldsTheOuterNameBack) {
  const std::string inner_prefix = prefix_ + "/jobs";
  auto inner = manager_on(inner_prefix);  // its inbox: P/jobs/\0inbox/<id>
  auto other = manager_on(inner_prefix);  // holds what `inner` waits for
  auto outer = manager();                 // on P: the lock "jobs"

  // 1. A hand-over note to `inner` creates its inbox key.
  ASSERT_NO_FATAL_FAILURE(note_to(*inner, *other, inner_prefix));
  const auto inbox_keys = [&] {
    std::vector<std::string> found;
    for (const auto& key : keys_under(raw_, inner_prefix + "/")) {
      if (is_inbox(key)) found.push_back(key);
    }
    return found;
  };
  ASSERT_EQ(inbox_keys().size(), 1u) << "the hand-over wrote no note";

  // 2. "jobs" on P queues behind that key (within the inbox's linger).
  auto jobs = outer->get_lock("jobs");
  std::atomic<bool> acquired{false};
  std::jthread jobs_waiter([&] {
    if (jobs->try_lock_for(30s)) {
      acquired = true;
      jobs->unlock();
    }
  });
  ASSERT_TRUE(eventually([&] { return acquired || count_prefix(raw_, prefix_ + "/jobs/") == 2; }, 900ms));

  // 3. Newer keys only: `other` holds "z", `inner` waits for it.
  auto held_z = other->get_lock("z");
  held_z->lock();
  auto waiting_z = inner->get_lock("z");
  std::stop_source stop;
  std::jthread second_waiter([&] {
    try {
      waiting_z->lock(stop.get_token());
      waiting_z->unlock();
    } catch (const Error&) {
      // cancelled
    }
  });
  ASSERT_TRUE(eventually([&] { return count_prefix(raw_, inner_prefix + "/z/") == 2; }));

  // Every entry older than the waiter of "jobs" is gone but the inbox key.
  EXPECT_TRUE(eventually([&] { return acquired.load(); }, 5s))
      << "\"jobs\" was never acquired: it waits for the inbox key of the manager on \"" << inner_prefix
      << "\", which stays while that manager has a waiter";

  stop.request_stop();
  second_waiter.join();
  held_z->unlock();
  jobs_waiter.join();
}

// The same inbox key, for the second it lingers after a hand-over: "jobs" on
// P is free (no lock or election holds it, nothing waits for it), yet info()
// reports the inbox key as its holder, an election's leader() names the inbox
// key (its value a hand-over note), and try_lock() fails.
TEST_F(ReviewNested, AnInboxKeyOfANestedPrefixIsNoHolderOfTheOuterName) {
  const std::string inner_prefix = prefix_ + "/jobs";
  auto inner = manager_on(inner_prefix);
  auto other = manager_on(inner_prefix);
  auto outer = manager();
  ASSERT_NO_FATAL_FAILURE(note_to(*inner, *other, inner_prefix));
  const auto keys = keys_under(raw_, prefix_ + "/jobs/");
  ASSERT_EQ(keys.size(), 1u) << "expected only the inbox key under the directory of \"jobs\"";
  ASSERT_TRUE(is_inbox(keys[0]));

  const auto info = outer->info("jobs");
  EXPECT_FALSE(info.has_value()) << "info(\"jobs\") names the inbox key " << (info ? info->key : "")
                                 << " as the holder of \"jobs\"";
  const auto leader = outer->get_election("jobs")->leader();
  EXPECT_FALSE(leader.has_value()) << "leader() of the election \"jobs\" is the inbox key, with the value \""
                                   << (leader ? leader->value : "") << "\"";
  auto jobs = outer->get_lock("jobs");
  EXPECT_TRUE(jobs->try_lock()) << "try_lock(\"jobs\") failed; only an inbox key stands under its directory";
  if (jobs->held()) jobs->unlock();
}

// Passes since the fix; kept for the path it added: try_lock() finds the
// inbox key first and queues, as for a free name; behind a holder it must
// then fail and leave no key behind.
TEST_F(ReviewNested, ATryLockBehindAnInboxKeyAndAHolderLeavesNoKey) {
  const std::string inner_prefix = prefix_ + "/jobs";
  auto inner = manager_on(inner_prefix);
  auto other = manager_on(inner_prefix);
  ASSERT_NO_FATAL_FAILURE(note_to(*inner, *other, inner_prefix));
  auto a = manager();
  auto b = manager();
  auto held = a->get_lock("jobs");
  ASSERT_TRUE(held->try_lock()) << "only the inbox key stands under the directory of \"jobs\"";
  auto tried = b->get_lock("jobs");
  EXPECT_FALSE(tried->try_lock()) << "two holders of \"jobs\"";
  ASSERT_TRUE(is_inbox(keys_under(raw_, prefix_ + "/jobs/").at(0)))
      << "the inbox key went too soon: the path was not taken";
  const auto entry_keys = [&] {
    std::vector<std::string> found;
    for (const auto& key : keys_under(raw_, prefix_ + "/jobs/")) {
      if (!is_inbox(key)) found.push_back(key);
    }
    return found;
  };
  EXPECT_TRUE(eventually([&] { return entry_keys().size() == 1; })) << "a failed try_lock left its key";
  held->unlock();
  EXPECT_TRUE(eventually([&] { return entry_keys().empty(); }));
}

// The inbox deleted a note only once none of its manager's waiters had
// expected one for a second (HandOverInbox::kNoteLinger), and each try_lock()
// expects one while its entry lives: a manager on "P/jobs" that polls
// try_lock() more often than once a second kept its inbox key for as long as
// it polled, and etcd's `etcdctl lock P/jobs` (which counts every key under
// the directory) waited behind it all that time. Now the key goes
// kNoteMaxStay (3 s) after its note came at the latest.
TEST_F(ReviewNested, AnInboxKeyGoesThoughItsManagerPollsTryLockWithoutPause) {
  const std::string inner_prefix = prefix_ + "/jobs";
  auto inner = manager_on(inner_prefix);
  auto other = manager_on(inner_prefix);
  ASSERT_NO_FATAL_FAILURE(note_to(*inner, *other, inner_prefix));
  const auto inbox_present = [&] { return std::ranges::any_of(keys_under(raw_, inner_prefix + "/"), is_inbox); };
  ASSERT_TRUE(inbox_present()) << "the hand-over wrote no note";

  std::atomic<bool> stop{false};
  std::atomic<int> polls{0};
  std::jthread poller([&] {
    auto polled = inner->get_lock("poll");
    while (!stop) {
      if (polled->try_lock()) polled->unlock();
      ++polls;
      std::this_thread::sleep_for(300ms);  // well under kNoteLinger
    }
  });
  const auto started = std::chrono::steady_clock::now();
  const bool gone = eventually([&] { return !inbox_present(); }, 8s);
  const auto stood = std::chrono::steady_clock::now() - started;
  stop = true;
  poller.join();
  EXPECT_TRUE(gone) << "the inbox key stayed while its manager polled try_lock() (" << polls.load() << " polls)";
  EXPECT_GE(polls.load(), 3) << "the poller did not poll through the linger: the test shows nothing";
  if (gone) {
    std::fprintf(stderr, "the inbox key went %lld ms after polling began, after %d polls\n",
                 static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(stood).count()),
                 polls.load());
  }
}

// info() and list() show the queue of "nest" with the entries of "nest/b" in
// it, and mark each entry "holds" (admitted) or not, counting the others as
// waiters. An entry of "nest/b" is admitted by the rules of its own queue,
// not by those of "nest": the holder of "nest/b" behind the holder of "nest"
// waits for nothing, yet both show it as a waiter of "nest", and so list()
// shows it holding in one row and waiting in the other.
TEST_F(ReviewNested, InfoShowsTheHolderOfALongerNameAsHoldingItsName) {
  auto a = manager();
  auto b = manager();
  auto outer = a->get_lock("nest");
  outer->lock();
  auto longer = b->get_lock("nest/b");
  ASSERT_TRUE(longer->try_lock());

  const auto info = a->info("nest");
  ASSERT_TRUE(info.has_value());
  ASSERT_EQ(info->queue.size(), 2u);
  EXPECT_TRUE(info->queue[0].holds);
  EXPECT_EQ(info->queue[1].key, longer->key());
  EXPECT_TRUE(info->queue[1].holds) << "info(\"nest\") says the holder of \"nest/b\" is not admitted";
  EXPECT_EQ(info->waiters, 0u) << "info(\"nest\") counts the holder of \"nest/b\" as a waiter";

  const auto rows = a->list();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].name, "nest");
  EXPECT_EQ(rows[0].waiters, 0u) << "list() counts the holder of \"nest/b\" as a waiter of \"nest\"";
  EXPECT_EQ(rows[1].name, "nest/b");
  EXPECT_EQ(rows[1].waiters, 0u);
  ASSERT_EQ(rows[1].queue.size(), 1u);
  EXPECT_TRUE(rows[1].queue[0].holds);

  longer->unlock();
  outer->unlock();
}

// The same with a semaphore "pool/x" (limit 3) under a semaphore "pool"
// (limit 2): every permit of "pool/x" holds, though two entries of "pool" are
// older; info("pool") says the third permit of "pool/x" waits.
TEST_F(ReviewNested, InfoShowsThePermitsOfALongerSemaphoreByItsOwnLimit) {
  auto a = manager();
  auto pool = a->get_semaphore("pool", 2);
  auto inner = a->get_semaphore("pool/x", 3);
  std::vector<Permit> permits;
  for (int i = 0; i < 2; ++i) {
    auto permit = pool->try_acquire_permit();
    ASSERT_TRUE(permit.has_value());
    permits.push_back(std::move(*permit));
  }
  for (int i = 0; i < 3; ++i) {
    auto permit = inner->try_acquire_permit();
    ASSERT_TRUE(permit.has_value()) << "permit " << i << " of \"pool/x\"";
    permits.push_back(std::move(*permit));
  }

  const auto info = a->info("pool");
  ASSERT_TRUE(info.has_value());
  ASSERT_EQ(info->queue.size(), 5u);
  for (std::size_t i = 0; i < info->queue.size(); ++i) {
    EXPECT_TRUE(info->queue[i].holds) << "entry " << i << " of the queue of \"pool\" is shown waiting";
  }
  EXPECT_EQ(info->waiters, 0u);
  const auto x = a->info("pool/x");
  ASSERT_TRUE(x.has_value());
  EXPECT_EQ(x->waiters, 0u);
}

}  // namespace
}  // namespace etcdlock::testing
