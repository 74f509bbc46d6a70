// Reviews of how notes reach the new heads when a holder's entries go
// otherwise than by an answered release: close() notes them grouped by inbox
// (note_heads in src/queue/hand_over.cc), a Txn of notes stays under etcd's
// request limit, a group whose put fails is told head by head, and a release
// whose answer is lost leaves the note to the key's guard (stray_entries.h).
// Against real etcd.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "etcd/lost_replies.h"
#include "etcd/watch_hub.h"
#include "keys/key_layout.h"
#include "lock_fixture.h"
#include "queue_entries.h"
#include "recording_listener.h"
#include "sanitizer.h"
#include "session/inbox.h"
#include "timed_waiter.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
// A waiter's watch of the entry ahead starts 500 ms after its read
// (queue_wait.h): one let in before this was let in by a note.
constexpr long kBeforeTheWatch = 450;

// The tests of hundreds of locks time close() and the waiters' admissions:
// under ThreadSanitizer close() of 448 locks took 37 s (notes past their
// deadline, 0 heads named), which says nothing of the notes' logic.
#if ETCDLOCK_TEST_SANITIZED
#define SKIP_TIMING_UNDER_SANITIZER() GTEST_SKIP() << "a timing of hundreds of locks, meaningless under a sanitizer"
// A close() of ten locks took up to 543 ms under ThreadSanitizer (CI's run
// of 2cce60a), and a head told by its note was let in 330 ms after it began.
constexpr long kLateAfterClose = 1000;
#else
#define SKIP_TIMING_UNDER_SANITIZER() static_cast<void>(0)
constexpr long kLateAfterClose = 300;
#endif

class ReviewNotes : public LockTest {
 public:
  detail::etcd::Client& raw() { return raw_; }
  using LockTest::manager_on;  // for late_after_lost_release
  // What close_with_heads saw.
  struct CloseOutcome {
    int late = 0;                // waiters let in 400 ms or more after close() began
    long worst = 0;              // the latest admission, ms after close() began
    std::size_t heads_told = 0;  // waiters' entries named in a note put during close()
    std::size_t inboxes_told = 0;
  };
  // `kManagers` waiting managers, `kPer` locks each, all held by one manager
  // on `prefix`, names `name_bytes` long: close(), how the waiters get in,
  // and which of them the notes put during close() named.
  CloseOutcome close_with_heads(const std::string& prefix, int kManagers, int kPer, std::size_t name_bytes);

  // The inbox keys under `prefix` and their versions (puts since created).
  std::vector<std::pair<std::string, std::int64_t>> inboxes(const std::string& prefix) {
    etcdserverpb::RangeRequest request;
    request.set_key(prefix + "/");
    request.set_range_end(detail::prefix_range_end(prefix + "/"));
    const auto found = raw_.range(request, in(5s));
    std::vector<std::pair<std::string, std::int64_t>> all;
    for (const auto& kv : found.kvs()) {
      if (kv.key().find('\0') != std::string::npos) all.emplace_back(kv.key(), kv.version());
    }
    return all;
  }
};

std::string padded_name(int i, std::size_t bytes) {
  auto name = "n" + std::to_string(i) + "-";
  if (name.size() < bytes) name += std::string(bytes - name.size(), 'x');
  return name;
}

ReviewNotes::CloseOutcome ReviewNotes::close_with_heads(const std::string& prefix, int kManagers, int kPer,
                                                        std::size_t name_bytes) {
  CloseOutcome outcome;
  const int kLocks = kManagers * kPer;
  auto holder = manager_on(prefix);
  std::vector<std::unique_ptr<LockManager>> waiters;
  for (int i = 0; i < kManagers; ++i) waiters.push_back(manager_on(prefix));
  std::vector<std::shared_ptr<Lock>> held;
  for (int i = 0; i < kLocks; ++i) {
    held.push_back(holder->get_lock(padded_name(i, name_bytes)));
    held.back()->lock();
  }
  // Each waiter holds for 2 s once in: a note's put needs its entry to
  // stand, whether the note or the watch let it in first.
  std::vector<Waiting> waits(kLocks);
  for (int i = 0; i < kLocks; ++i) {
    wait_on(waiters[i % kManagers]->get_lock(padded_name(i, name_bytes)), waits[i], nullptr, nullptr, 2s);
  }
  const bool queued = eventually(
      [&] {
        for (int i = 0; i < kLocks; ++i) {
          if (count_prefix(raw_, prefix + "/" + padded_name(i, name_bytes) + "/") != 2) return false;
        }
        return true;
      },
      30s);
  if (!queued) {
    ADD_FAILURE() << "the waiters did not queue";
    return outcome;
  }
  // Every put under the prefix from here on: the notes are puts to inboxes.
  detail::Logger log{stderr_log_sink(LogLevel::warning)};
  detail::etcd::WatchHub hub(raw_, log);
  auto puts = std::make_shared<RecordingListener>();
  hub.add(prefix + "/", detail::prefix_range_end(prefix + "/"), 0, puts, detail::etcd::WatchHub::Events::puts_only);
  if (!eventually([&] { return puts->start_revision() != 0; }, 5s)) {
    ADD_FAILURE() << "the watch of the notes did not start";
    return outcome;
  }
  std::this_thread::sleep_for(20ms);  // the waiters' watches deferred (500 ms after their reads)
  const auto closed_at = Clock::now();
  holder->close();
  const auto close_took = ms(Clock::now() - closed_at);
  int never = 0;
  for (auto& w : waits) {
    const auto at = w.got.get();
    if (at == Clock::time_point{}) {
      ++never;
      continue;
    }
    const auto took = ms(at - closed_at);
    outcome.worst = std::max(outcome.worst, took);
    if (took >= 400) ++outcome.late;
  }
  std::set<std::string> heads;
  std::set<std::string> inboxes;
  for (const auto& event : puts->events()) {
    if (event.key.find('\0') == std::string::npos) continue;  // an entry, not an inbox
    inboxes.insert(event.key);
    for (const auto& note : detail::decode_notes(event.value)) heads.insert(note.entry.key);
  }
  outcome.heads_told = heads.size();
  outcome.inboxes_told = inboxes.size();
  std::fprintf(stderr,
               "%d locks (names %zu bytes, prefix %zu bytes), %d waiting managers: close() took %ld ms; worst "
               "admission %ld ms after close began; %d at >= 400 ms; %d never; notes named %zu heads in %zu inboxes\n",
               kLocks, name_bytes, prefix.size(), kManagers, close_took, outcome.worst, outcome.late, never,
               outcome.heads_told, outcome.inboxes_told);
  EXPECT_EQ(never, 0);
  EXPECT_LT(close_took, 2000);
  for (auto& w : waiters) w->close();
  EXPECT_TRUE(eventually([&] { return count_prefix(raw_, prefix + "/") == 0; }, 10s)) << "keys left";
  return outcome;
}

// Long names (the limit is 1024 bytes for a prefix and for a name): one Txn
// of notes for 7 inboxes of 64 heads would be about 1.8 MB, above etcd's
// default --max-request-bytes (1.5 MiB), and etcd refuses it ("request is
// too large"). On 160761d, before the notes were cut at 512 KiB a Txn
// (b47dfcc): 7 of 7 runs failed, no inbox written, 149-340 of 448 heads left
// to their watches. On b47dfcc: every inbox written, in 5 Txns; close() 248
// ms, worst admission 362 ms (the notes of 2 MB take that long to commit).
// So this checks that each manager got its notes, and admissions only as
// far as a deferred watch would be later.
TEST_F(ReviewNotes, LongNamesManyInboxesCloseNotesEveryHead) {
  SKIP_TIMING_UNDER_SANITIZER();
  const std::string prefix = prefix_ + "/" + std::string(900, 'p');
  const auto outcome = close_with_heads(prefix, 7, 64, 1000);
  EXPECT_EQ(outcome.heads_told, 7U * 64U) << "heads left to their watches: no note named them";
  EXPECT_EQ(outcome.inboxes_told, 7U);
}

// The same with short names: the control.
TEST_F(ReviewNotes, ShortNamesManyInboxesControl) {
  SKIP_TIMING_UNDER_SANITIZER();
  const auto outcome = close_with_heads(prefix_, 7, 64, 8);
  EXPECT_EQ(outcome.heads_told, 7U * 64U);
  // A timing (as ReviewClose's many_locks): 448 notes in 2 Txns.
  EXPECT_EQ(outcome.late, 0) << "worst " << outcome.worst << " ms";
}

// A multi-lock's release: its second write of notes goes through note_heads
// too. 64 long names (the most a multi-lock takes), each with a waiter of
// its own manager: 64 groups of one, each ~4 KB.
TEST_F(ReviewNotes, LongNamesMultiReleaseNotesEveryHead) {
  SKIP_TIMING_UNDER_SANITIZER();
  const std::string prefix = prefix_ + "/" + std::string(900, 'p');
  constexpr int kNames = 64;
  auto holder = manager_on(prefix);
  std::vector<std::string> names;
  for (int i = 0; i < kNames; ++i) names.push_back(padded_name(i, 1000));
  std::vector<std::string_view> views(names.begin(), names.end());
  auto multi = holder->get_multi_lock(std::span<const std::string_view>(views));
  multi->lock();
  std::vector<std::unique_ptr<LockManager>> waiters;
  for (int i = 0; i < 8; ++i) waiters.push_back(manager_on(prefix));
  std::vector<Waiting> waits(kNames);
  for (int i = 0; i < kNames; ++i) wait_on(waiters[i % 8]->get_lock(names[i]), waits[i]);
  ASSERT_TRUE(eventually(
      [&] {
        for (int i = 0; i < kNames; ++i) {
          if (count_prefix(raw_, prefix + "/" + names[i] + "/") != 2) return false;
        }
        return true;
      },
      30s));
  std::this_thread::sleep_for(600ms);
  const auto at = Clock::now();
  multi->unlock();
  const auto unlock_took = ms(Clock::now() - at);
  int late = 0;
  long worst = 0;
  for (auto& w : waits) {
    const auto in_at = w.got.get();
    ASSERT_NE(in_at, Clock::time_point{});
    worst = std::max(worst, ms(in_at - at));
    if (ms(in_at - at) >= 300) ++late;
  }
  std::fprintf(stderr, "multi unlock took %ld ms; worst admission %ld ms; %d late\n", unlock_took, worst, late);
  EXPECT_EQ(late, 0);
  holder->close();
  for (auto& w : waiters) w->close();
  EXPECT_TRUE(eventually([&] { return count_prefix(raw_, prefix + "/") == 0; }, 10s)) << "keys left";
}

// A group whose put fails because one of its heads went meanwhile: the test
// deletes the waiter's entry of m0 at a random moment of the close, so that
// sometimes it goes between close()'s read of the heads and its notes. The
// other heads of that inbox must still be told (one by one), not left to
// their watches. The inbox key's version says how many puts it got.
TEST_F(ReviewNotes, GroupWithAGoneHeadIsToldOneByOne) {
  constexpr int kTrials = 40;
  constexpr int kLocks = 10;
  std::mt19937 random(12345);
  int late_total = 0;
  int alone_trials = 0;
  for (int trial = 0; trial < kTrials; ++trial) {
    const std::string prefix = prefix_ + "/t" + std::to_string(trial);
    auto holder = manager_on(prefix);
    auto waiter = manager_on(prefix);
    std::vector<std::shared_ptr<Lock>> held;
    for (int i = 0; i < kLocks; ++i) {
      held.push_back(holder->get_lock("m" + std::to_string(i)));
      held.back()->lock();
    }
    std::vector<Waiting> waits(kLocks);
    for (int i = 0; i < kLocks; ++i) wait_on(waiter->get_lock("m" + std::to_string(i)), waits[i]);
    ASSERT_TRUE(eventually([&] {
      for (int i = 0; i < kLocks; ++i) {
        if (count_prefix(raw_, prefix + "/m" + std::to_string(i) + "/") != 2) return false;
      }
      return true;
    }));
    const auto entries0 = queue_entries(raw_, prefix + "/m0/");
    ASSERT_EQ(entries0.size(), 2U);
    const std::string waiter_key = entries0[1].key();
    std::this_thread::sleep_for(600ms);
    const auto delay = std::chrono::microseconds(std::uniform_int_distribution<int>(0, 4000)(random));
    const auto closed_at = Clock::now();
    std::jthread deleter([&] {
      std::this_thread::sleep_until(closed_at + delay);
      etcdserverpb::DeleteRangeRequest del;
      del.set_key(waiter_key);
      raw_.delete_range(del, in(5s));
    });
    holder->close();
    const auto close_took = ms(Clock::now() - closed_at);
    deleter.join();
    std::int64_t version = 0;
    for (const auto& [key, v] : inboxes(prefix)) version = std::max(version, v);
    long worst = 0;
    int late = 0;
    for (int i = 1; i < kLocks; ++i) {
      const auto at = waits[i].got.get();
      ASSERT_NE(at, Clock::time_point{});
      worst = std::max(worst, ms(at - closed_at));
      if (ms(at - closed_at) >= kLateAfterClose) ++late;
    }
    (void)waits[0].got.get();
    if (version > 1) ++alone_trials;
    late_total += late;
    std::fprintf(stderr, "trial %d: delete at %ld us; close %ld ms; inbox version %ld; worst %ld ms; %d late\n", trial,
                 static_cast<long>(delay.count()), close_took, static_cast<long>(version), worst, late);
    waiter->close();
    EXPECT_TRUE(eventually([&] { return count_prefix(raw_, prefix + "/") == 0; }, 10s)) << "keys left";
  }
  std::fprintf(stderr, "%d of %d trials took the one-by-one path; %d late admissions\n", alone_trials, kTrials,
               late_total);
  EXPECT_EQ(late_total, 0);
}

// A lost reply of close()'s Txn of notes (it committed): the heads were told
// all the same, and nothing is left behind.
TEST_F(ReviewNotes, LostReplyOfTheNotesTxnAtClose) {
  SKIP_TIMING_UNDER_SANITIZER();
  constexpr int kTrials = 5;
  int late_total = 0;
  for (int trial = 0; trial < kTrials; ++trial) {
    const std::string prefix = prefix_ + "/l" + std::to_string(trial);
    auto holder = manager_on(prefix);
    std::vector<std::unique_ptr<LockManager>> waiters;
    for (int i = 0; i < 3; ++i) waiters.push_back(manager_on(prefix));
    constexpr int kLocks = 70;  // one inbox gets 2 rounds...
    std::vector<std::shared_ptr<Lock>> held;
    for (int i = 0; i < kLocks; ++i) {
      held.push_back(holder->get_lock("m" + std::to_string(i)));
      held.back()->lock();
    }
    std::vector<Waiting> waits(kLocks);
    // m0..m65 to waiter 0 (more than 64 heads of one inbox), the rest to 1 and 2.
    for (int i = 0; i < kLocks; ++i) {
      wait_on(waiters[i < 66 ? 0 : 1 + i % 2]->get_lock("m" + std::to_string(i)), waits[i]);
    }
    ASSERT_TRUE(eventually([&] {
      for (int i = 0; i < kLocks; ++i) {
        if (count_prefix(raw_, prefix + "/m" + std::to_string(i) + "/") != 2) return false;
      }
      return true;
    }));
    std::this_thread::sleep_for(600ms);
    detail::etcd::LostReplies::arm(detail::etcd::write_site::note, "", 1 + trial % 2);
    const auto closed_at = Clock::now();
    holder->close();
    const auto close_took = ms(Clock::now() - closed_at);
    detail::etcd::LostReplies::disarm();
    long worst = 0;
    int late = 0;
    for (auto& w : waits) {
      const auto at = w.got.get();
      ASSERT_NE(at, Clock::time_point{});
      worst = std::max(worst, ms(at - closed_at));
      if (ms(at - closed_at) >= 300) ++late;
    }
    late_total += late;
    std::fprintf(stderr, "trial %d: close %ld ms; worst %ld ms; %d late; inboxes:", trial, close_took, worst, late);
    for (const auto& [key, v] : inboxes(prefix)) std::fprintf(stderr, " v%ld", static_cast<long>(v));
    std::fprintf(stderr, "\n");
    for (auto& w : waiters) w->close();
    EXPECT_TRUE(eventually([&] { return count_prefix(raw_, prefix + "/") == 0; }, 10s)) << "keys left";
  }
  EXPECT_EQ(late_total, 0);
}

// When the holder's manager closes: once its waiter is in, or right after
// the unlock, before the waiter has been told.
enum class HolderCloses { after_the_waiter_is_in, right_after_the_unlock };

// A release whose Txn commits and whose reply is lost, `trials` times: the
// holder's lock comes from `take` (a Lock or a MultiLock on "x"), a waiter of
// another manager waits on "x". Returns how many waiters came in only at
// their deferred watch or later.
template <class Take>
int late_after_lost_release(ReviewNotes& test, const std::string& prefix, std::string_view site, Take take,
                            HolderCloses closes = HolderCloses::after_the_waiter_is_in, int trials = 5) {
  int late = 0;
  for (int trial = 0; trial < trials; ++trial) {
    const std::string trial_prefix = prefix + "/" + std::to_string(trial);
    auto holder = test.manager_on(trial_prefix);
    auto waiter = test.manager_on(trial_prefix);
    auto held = take(*holder);
    held->lock();
    Waiting w;
    wait_on(waiter->get_lock("x"), w);
    EXPECT_TRUE(eventually([&] { return count_prefix(test.raw(), trial_prefix + "/x/") == 2; }));
    std::this_thread::sleep_for(20ms);
    detail::etcd::LostReplies::arm(site);
    const auto at = Clock::now();
    std::error_code ec;
    held->unlock(ec);
    detail::etcd::LostReplies::disarm();
    if (closes == HolderCloses::right_after_the_unlock) holder->close();
    const auto in_at = w.got.get();
    EXPECT_NE(in_at, Clock::time_point{});
    if (ms(in_at - at) >= kBeforeTheWatch) ++late;
    std::fprintf(stderr, "trial %d: unlock (%s); waiter in %ld ms after unlock began\n", trial, ec.message().c_str(),
                 ms(in_at - at));
    holder->close();
    waiter->close();
    EXPECT_TRUE(eventually([&] { return count_prefix(test.raw(), trial_prefix + "/") == 0; }, 10s)) << "keys left";
  }
  return late;
}

// A multi-lock's release Txn commits and its reply is lost: the waiter
// behind it, queued just before, is told by the guard of the key (which
// finds the entry gone). Before that guard's note, the waiter got in by its
// deferred watch, 6 of 6 (504-537 ms); with it, 4-9 ms.
TEST_F(ReviewNotes, LostReplyOfTheMultiReleaseTxn) {
  EXPECT_EQ(late_after_lost_release(*this, prefix_ + "/r", detail::etcd::write_site::multi_release,
                                    [](LockManager& m) {
                                      return m.get_multi_lock({"x", "y"});
                                    }),
            0);
}

// The same for a single lock's release: 4-8 ms with the guard's note.
TEST_F(ReviewNotes, LostReplyOfASingleLockRelease) {
  EXPECT_EQ(late_after_lost_release(*this, prefix_ + "/s", detail::etcd::write_site::release,
                                    [](LockManager& m) { return m.get_lock("x"); }),
            0);
}

// A lost release, then close() of the releasing manager at once. The hold is
// finished, so close() had no note to send for its queue; the retired key was
// read as an unanswered create (absent by then: no one noted), and stopping
// the guard cut its own note short. The waiter got in by its deferred watch in
// 36 % of trials (helper-43's review of 8889523; 8 of 30 in a run of
// 2026-12-05). close() now notes the head behind every retired entry whose
// revision it knows, once the lease is revoked: 0 of 30.
TEST_F(ReviewNotes, CloseRightAfterALostReleaseStillNotesTheWaiter) {
  EXPECT_EQ(late_after_lost_release(
                *this, prefix_ + "/c", detail::etcd::write_site::release,
                [](LockManager& m) { return m.get_lock("x"); }, HolderCloses::right_after_the_unlock, 10),
            0);
}

}  // namespace
}  // namespace etcdlock::testing
