// Writes whose outcome is unknown, notes acted on late, and keys that one
// state per name must own: the second safety review's findings, each a way
// to two holders (or a blocked foreign client) that the old code allowed.
//
// The rule under test: when a write's reply is lost after it committed, the
// local state takes the side that cannot admit a second holder (what was
// given up is given up, and its loss is signalled; what was taken is not held
// until confirmed), and an event is acted on only when it confirms the
// caller's own entry.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>

#include "child_process.h"
#include "etcd/lost_replies.h"
#include "expect_error.h"
#include "lock_fixture.h"
#include "tcp_proxy.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
using detail::etcd::LostReplies;
namespace write_site = detail::etcd::write_site;

class UnconfirmedWrite : public LockTest {
 protected:
  ~UnconfirmedWrite() override { LostReplies::disarm(); }

  int etcd_port() const {
    const auto endpoint = etcd_.endpoints()[0];
    return std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  }
  // etcd's count of the watchers on it now (etcd_debugging_mvcc_watcher_total,
  // from its /metrics), or -1 if it could not be read.
  long watchers_in_etcd() const {
    std::string scraped;
    const std::string get = "bash -c 'exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(etcd_port()) +
                            "; printf \"GET /metrics HTTP/1.0\\r\\n\\r\\n\" >&3; cat <&3'";
    if (run_command(get, &scraped) != 0) return -1;
    const std::string name = "\netcd_debugging_mvcc_watcher_total ";
    const auto at = scraped.find(name);
    if (at == std::string::npos) return -1;
    return std::stol(scraped.substr(at + name.size()));
  }
  std::unique_ptr<LockManager> manager_through(TcpProxy& link) {
    auto through = options();
    if (std::getenv("DEBUG_W")) through.log_sink = stderr_log_sink(LogLevel::debug);
    through.endpoints = {link.endpoint()};
    return std::make_unique<LockManager>(through);
  }
};

// Finding 1. The put that turns A's write entry into a read entry commits, so
// the reader behind A is admitted; its reply is lost. A must not go on as the
// writer beside that reader.
TEST_F(UnconfirmedWrite, DowngradeWhoseReplyIsLostEndsTheWriteHold) {
  auto writer_manager = manager();
  auto reader_manager = manager();
  auto table = writer_manager->get_shared_lock("t");
  auto reader_table = reader_manager->get_shared_lock("t");
  table->lock();
  const auto lost = table->lost_token();
  std::atomic<bool> reading{false};
  std::jthread reader([&] {
    reader_table->lock_shared();
    reading = true;
    std::this_thread::sleep_for(300ms);
    reader_table->unlock_shared();
  });
  ASSERT_TRUE(eventually([&] { return entries("t") == 2; }));
  LostReplies::arm(write_site::downgrade, prefix_ + "/t/");
  expect_error(errc::unavailable, "reply was lost", [&] { table->lock_shared(); });
  EXPECT_FALSE(table->held_exclusively_by_this_thread()) << "a writer that may be a reader already";
  EXPECT_FALSE(table->held_shared_by_this_thread()) << "a read side that etcd never confirmed";
  EXPECT_TRUE(lost.stop_requested()) << "the given-up write hold's loss was not signalled";
  EXPECT_FALSE(table->guarded_put(prefix_ + "-data", "x")) << "a guarded write beside a reader";
  ASSERT_TRUE(eventually([&] { return reading.load(); }));
  reader.join();
  std::error_code ec;
  table->unlock(ec);
  EXPECT_EQ(ec, errc::lock_expired);
  EXPECT_TRUE(eventually([&] { return entries("t") == 0; }));
}

// Finding 2. A's resign commits and B leads at once; the reply is lost. A must
// not go on as leader.
TEST_F(UnconfirmedWrite, ResignWhoseReplyIsLostLeavesOneLeader) {
  auto a_manager = manager();
  auto b_manager = manager();
  auto a = a_manager->get_election("e");
  auto b = b_manager->get_election("e");
  a->campaign("a");
  const auto lost = a->lost_token();
  std::atomic<bool> b_leads{false};
  std::jthread campaign([&] {
    b->campaign("b");
    b_leads = true;
  });
  ASSERT_TRUE(eventually([&] { return entries("e") == 2; }));
  LostReplies::arm(write_site::resign, prefix_ + "/e/");
  a->resign();  // never throws
  EXPECT_FALSE(a->is_leader()) << "a resign whose outcome is unknown kept the leadership";
  EXPECT_TRUE(lost.stop_requested());
  EXPECT_EQ(a->fencing_token(), 0);
  EXPECT_FALSE(a->guarded_put(prefix_ + "-data", "x"));
  ASSERT_TRUE(eventually([&] { return b_leads.load(); }));
  EXPECT_FALSE(a->is_leader() && b->is_leader()) << "two leaders";
  campaign.join();
  b->resign();
  EXPECT_TRUE(eventually([&] { return entries("e") == 0; }));
}

// The same when the resign cannot reach etcd at all: the leadership ends here,
// and its key is removed once etcd is back.
TEST_F(UnconfirmedWrite, ResignThatCannotReachEtcdEndsTheLeadershipHere) {
  TcpProxy link(etcd_port());
  auto through = options();
  through.endpoints = {link.endpoint()};
  through.command_timeout = 300ms;
  LockManager a_manager(through);
  auto a = a_manager.get_election("e");
  a->campaign("a");
  const auto lost = a->lost_token();
  link.cut();
  a->resign();
  EXPECT_FALSE(a->is_leader());
  EXPECT_TRUE(lost.stop_requested());
  EXPECT_EQ(entries("e"), 1);
  link.restore();
  EXPECT_TRUE(eventually([&] { return entries("e") == 0; })) << "the key was never removed";
  // The next campaign takes a key of its own, and leads.
  ASSERT_TRUE(a->campaign_for("a2", 5s));
  EXPECT_TRUE(a->is_leader());
  a->resign();
}

// The unlock of a lock whose reply is lost: the hold is given up and its
// loss signalled, and the lock's next holder on the same lease uses a key of
// its own, so no late delete or stray entry can touch it.
TEST_F(UnconfirmedWrite, UnlockWhoseReplyIsLostSignalsTheLossAndTheNextHoldTakesANewKey) {
  auto holder_manager = manager();
  auto lock = holder_manager->get_lock("x");
  lock->lock();
  const auto first_key = lock->key();
  const auto lost = lock->lost_token();
  LostReplies::arm(write_site::release, first_key);
  std::error_code ec;
  lock->unlock(ec);
  EXPECT_EQ(ec, errc::unavailable);
  EXPECT_TRUE(lost.stop_requested());
  EXPECT_FALSE(lock->held());
  EXPECT_EQ(entries("x"), 0) << "the delete committed";
  ASSERT_TRUE(lock->try_lock());
  EXPECT_NE(lock->key(), first_key) << "a retired key was used again";
  EXPECT_FALSE(lock->lost_token().stop_requested());
  lock->unlock();
}

// Finding 3. A note that reaches W after an admin removed W's entry (W's
// connection stalled meanwhile) must not make W a holder beside X.
TEST_F(UnconfirmedWrite, LateNoteDoesNotAdmitAWaiterWhoseEntryIsGone) {
  TcpProxy w_link(etcd_port());
  auto h_manager = manager();
  auto w_manager = manager_through(w_link);
  auto x_manager = manager();
  auto admin = manager();
  auto h = h_manager->get_lock("x");
  auto w = w_manager->get_lock("x");
  auto x = x_manager->get_lock("x");
  {
    // H acquires after a wait, so that its release hands over with the note
    // in the same Txn as its delete: W sees both at one revision, the
    // predecessor's delete first, and takes the note within its grace.
    auto z = admin->get_lock("x");
    std::atomic<bool> z_holds{false};
    std::jthread z_thread([&] {
      z->lock();
      z_holds = true;
      eventually([&] { return entries("x") == 2; });
      z->unlock();
    });
    ASSERT_TRUE(eventually([&] { return z_holds.load(); }));
    h->lock();
  }
  ASSERT_TRUE(h->held_by_this_thread());
  std::atomic<bool> w_returned{false};
  std::atomic<bool> w_key_at_return{false};
  std::atomic<bool> x_held_at_return{false};
  std::jthread w_thread([&] {
    w->lock();
    x_held_at_return = x->held();
    w_key_at_return = get(raw_, w->key()).kvs_size() == 1;
    w_returned = true;
    w->unlock();
  });
  ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
  std::atomic<bool> x_holds{false};
  std::atomic<bool> x_release{false};
  std::jthread x_thread([&] {
    x->lock();
    x_holds = true;
    while (!x_release) std::this_thread::sleep_for(5ms);
    x->unlock();
  });
  // Declared after the threads, so destroyed before they are joined: a
  // failed assertion below must leave neither X holding nor W cut off.
  struct Unblock {
    std::atomic<bool>& release;
    TcpProxy& link;
    ~Unblock() {
      link.resume();
      release = true;
    }
  } unblock{x_release, w_link};
  ASSERT_TRUE(eventually([&] { return entries("x") == 3; }));
  w_link.pause();
  h->unlock();  // hands over to W, with a note in W's inbox
  ASSERT_TRUE(eventually([&] {
    const auto holder = admin->info("x");
    return holder && holder->key == w->key();
  })) << (admin->info("x") ? admin->info("x")->key : "no holder")
      << " " << w->key();
  ASSERT_TRUE(admin->force_unlock("x"));  // W's entry
  ASSERT_TRUE(eventually([&] { return x_holds.load(); }));
  w_link.resume();
  std::this_thread::sleep_for(1s);  // W reads its note now
  EXPECT_FALSE(w_returned.load()) << "W acquired on a note while X holds";
  x_release = true;
  ASSERT_TRUE(eventually([&] { return w_returned.load(); }));
  EXPECT_FALSE(x_held_at_return.load());
  EXPECT_TRUE(w_key_at_return.load()) << "W held with no key in etcd";
}

// Finding 4. A permit keeps its semaphore's state alive after the handle is
// gone; a second state for the same name (other options) would start its
// keys again and adopt the held permit's key.
TEST_F(UnconfirmedWrite, OneSemaphoreStatePerNameWhateverTheOptions) {
  auto permits = manager();
  auto pool = permits->get_semaphore("s", 1);
  auto permit = pool->acquire_permit();
  pool.reset();
  expect_error(errc::invalid_argument, "other options", [&] { permits->get_semaphore("s", 2); });
  auto again = permits->get_semaphore("s", 1);
  EXPECT_FALSE(again->try_acquire_permit()) << "a second permit of a limit-1 semaphore";
  permit.release();
  auto next = again->try_acquire_permit();
  ASSERT_TRUE(next);
  EXPECT_TRUE(next->held());
}

// Keys of permits and read-write holds are never reused in a manager, by any
// object: a late delete of one cannot reach another.
TEST_F(UnconfirmedWrite, EntryKeysAreNeverReusedAcrossObjects) {
  auto permits = manager();
  std::string first_key;
  {
    auto pool = permits->get_semaphore("s", 2);
    auto permit = pool->acquire_permit();
    const auto info = permits->info("s");
    ASSERT_TRUE(info);
    first_key = info->key;
  }
  auto pool = permits->get_semaphore("s", 2);
  auto permit = pool->acquire_permit();
  const auto info = permits->info("s");
  ASSERT_TRUE(info);
  EXPECT_NE(info->key, first_key);
}

// Finding 5. A limit near INT64_MAX overflowed `limit + 1`.
TEST_F(UnconfirmedWrite, SemaphoreLimitOutOfRangeIsRefused) {
  auto permits = manager();
  const auto huge = std::numeric_limits<std::int64_t>::max();
  expect_error(errc::invalid_argument, std::to_string(huge), [&] { permits->get_semaphore("s", huge); });
  expect_error(errc::invalid_argument, "1000001", [&] { permits->get_semaphore("s", Semaphore::kMaxLimit + 1); });
  auto largest = permits->get_semaphore("s", Semaphore::kMaxLimit);
  auto permit = largest->acquire_permit();
  EXPECT_TRUE(permit.held());
}

// Finding 6. A manager on prefix "P/jobs" leaves no key under "P/jobs/" once
// its holds and waits are over: `etcdctl lock P/jobs` (and Go's Mutex) count
// every key there as a queue entry, and would wait behind one forever.
TEST_F(UnconfirmedWrite, NestedPrefixLeavesNothingInTheOuterLocksQueue) {
  auto nested = options();
  nested.prefix = prefix_ + "/jobs";
  LockManager first(nested);
  LockManager second(nested);
  auto a = first.get_lock("n");
  auto b = second.get_lock("n");
  // A hand-over with a note into second's inbox.
  a->lock();
  std::jthread waiter([&] {
    b->lock();
    b->unlock();
  });
  ASSERT_TRUE(eventually([&] { return count_prefix(raw_, nested.prefix + "/n/") == 2; }));
  a->unlock();
  waiter.join();
  // A create whose reply is lost, retried and adopted: its key is retired at release.
  LostReplies::arm(write_site::enqueue, nested.prefix + "/n/");
  a->lock();
  a->unlock();
  EXPECT_TRUE(eventually([&] { return count_prefix(raw_, nested.prefix + "/") == 0; }, 5s))
      << "keys left under the nested prefix while both managers live";
  ChildProcess etcdctl({"timeout", "10", "etcdctl", "--endpoints=" + etcd_.endpoints_csv(), "lock", nested.prefix, "--",
                        "echo", "held"});
  EXPECT_EQ(etcdctl.read_line(12s), "held") << "etcdctl lock waits behind a key of the nested manager";
  EXPECT_EQ(etcdctl.wait(), 0);
}

// Suspected: a create in doubt on a lease that was then lost here (but lives
// on in etcd for a moment) must not block the queue until that lease expires.
TEST_F(UnconfirmedWrite, EntryOnALeaseLostHereIsRemovedBeforeItExpiresInEtcd) {
  TcpProxy link(etcd_port());
  auto through = options();
  through.endpoints = {link.endpoint()};
  // A long TTL, for a margin (a fifth of it, 4 s) that outlasts a
  // reconnection on a loaded machine by far.
  through.ttl = 20s;
  through.command_timeout = 300ms;
  LockManager waiter_manager(through);
  auto holder_manager = manager();
  auto holding = holder_manager->get_lock("x");
  holding->lock();
  auto waiting = waiter_manager.get_lock("x", LockOptions{.retry_interval = 20ms});
  std::jthread waiter([&] {
    if (waiting->try_lock_for(40s)) waiting->unlock();
  });
  ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
  const auto old_key = waiting->key();
  const auto old_lease = waiter_manager.lease_id();
  link.pause();
  ASSERT_TRUE(eventually([&] { return waiter_manager.state() == SessionState::lost; }, 25s));
  // Lost here one margin before etcd can expire the lease; anything sent at
  // the loss has timed out by now.
  std::this_thread::sleep_for(400ms);
  // When etcd will expire the lease at the earliest (its TTL in whole
  // seconds, rounded down), read past the paused link.
  const auto asked = std::chrono::steady_clock::now();
  const auto remaining = raw_.lease_time_to_live(old_lease, in(5s)).ttl();
  ASSERT_GT(remaining, 0) << "the lease went before replies resumed";
  const auto expiry = asked + std::chrono::seconds(remaining);
  link.resume();
  // The old entry goes (removed, or its lease revoked) before etcd would
  // have expired the lease: the queue is not held up for the rest of it.
  ASSERT_TRUE(eventually([&] { return get(raw_, old_key).kvs_size() == 0; }, 30s));
  EXPECT_LT(std::chrono::steady_clock::now(), expiry) << "the entry stayed until its lease expired in etcd";
  holding->unlock();
  waiter.join();
}

// A wait that gives up (its deadline passes, or a try finds the name taken)
// after its enqueue's reply was lost: the entry it never heard of is adopted
// and handed to the removal, for each primitive, so nothing of it stays in
// the queue to hold up the next waiter (helper-57's review of 817dc9d).
TEST_F(UnconfirmedWrite, AWaitThatGivesUpAfterItsEnqueueReplyWasLostLeavesNoEntry) {
  auto holder_manager = manager();
  auto waiter_manager = manager();
  const auto lost_before = LostReplies::dropped(write_site::enqueue);

  auto holding_lock = holder_manager->get_lock("l");
  holding_lock->lock();
  auto waiting_lock = waiter_manager->get_lock("l");
  LostReplies::arm(write_site::enqueue, prefix_ + "/l/");
  EXPECT_FALSE(waiting_lock->try_lock_for(400ms));
  EXPECT_TRUE(eventually([&] { return entries("l") == 1; })) << entries("l") << " entries of the lock";

  auto holding_semaphore = holder_manager->get_semaphore("s", 1);
  auto permit = holding_semaphore->acquire_permit();
  auto waiting_semaphore = waiter_manager->get_semaphore("s", 1);
  LostReplies::arm(write_site::enqueue, prefix_ + "/s/");
  EXPECT_FALSE(waiting_semaphore->try_acquire_permit_for(400ms).has_value());
  EXPECT_TRUE(eventually([&] { return entries("s") == 1; })) << entries("s") << " entries after the timed wait";
  LostReplies::arm(write_site::enqueue, prefix_ + "/s/");
  EXPECT_FALSE(waiting_semaphore->try_acquire_permit().has_value());
  EXPECT_TRUE(eventually([&] { return entries("s") == 1; })) << entries("s") << " entries after the try";

  auto holding_shared = holder_manager->get_shared_lock("t");
  holding_shared->lock();
  auto waiting_shared = waiter_manager->get_shared_lock("t");
  LostReplies::arm(write_site::enqueue, prefix_ + "/t/");
  EXPECT_FALSE(waiting_shared->try_lock_shared_for(400ms));
  EXPECT_TRUE(eventually([&] { return entries("t") == 1; })) << entries("t") << " entries of the shared lock";

  auto leading = holder_manager->get_election("e");
  leading->campaign("holder");
  auto campaigning = waiter_manager->get_election("e");
  LostReplies::arm(write_site::enqueue, prefix_ + "/e/");
  EXPECT_FALSE(campaigning->campaign_for("waiter", 400ms));
  EXPECT_TRUE(eventually([&] { return entries("e") == 1; })) << entries("e") << " entries of the election";

  EXPECT_EQ(LostReplies::dropped(write_site::enqueue) - lost_before, 5);
  for (const auto& counted : waiter_manager->metrics().locks) {
    EXPECT_EQ(counted.waiting, 0) << counted.kind << " " << counted.name << " still counts a waiter";
  }
  holding_lock->unlock();
  permit.release();
  holding_shared->unlock();
  leading->resign();
}

// A cancelled lock() whose enqueue reply and whose removal's first reply were
// both lost: the removal retries in the background until the entry is gone,
// and the next acquisition is not held up by it.
TEST_F(UnconfirmedWrite, ACancelledWaitWhoseEnqueueAndRemovalRepliesWereLostLeavesNoEntry) {
  auto holder_manager = manager();
  auto waiter_manager = manager();
  auto holding = holder_manager->get_lock("l");
  holding->lock();
  auto waiting = waiter_manager->get_lock("l");
  const auto removals_lost_before = LostReplies::dropped(write_site::removal);
  const auto enqueues_lost_before = LostReplies::dropped(write_site::enqueue);
  LostReplies::arm(write_site::enqueue, prefix_ + "/l/");
  LostReplies::arm(write_site::removal, prefix_ + "/l/");
  std::stop_source stop;
  // Cancelled once the enqueue's reply is lost, not after a fixed time: on a
  // loaded sanitizer run a fixed 500 ms could cancel before the enqueue was
  // even sent, and then there is no entry to remove.
  std::jthread canceller([&] {
    EXPECT_TRUE(eventually([&] { return LostReplies::dropped(write_site::enqueue) > enqueues_lost_before; }, 20s));
    std::this_thread::sleep_for(100ms);
    stop.request_stop();
  });
  expect_error(errc::cancelled, "cancelled", [&] { waiting->lock(stop.get_token()); });
  EXPECT_TRUE(eventually([&] { return entries("l") == 1; })) << entries("l") << " entries";
  EXPECT_EQ(LostReplies::dropped(write_site::removal) - removals_lost_before, 1);
  holding->unlock();
  EXPECT_TRUE(waiting->try_lock_for(5s));
  waiting->unlock();
  EXPECT_TRUE(eventually([&] { return entries("l") == 0; }));
}

// A try whose timeout is shorter than etcd's answer to its create. The
// create was sent with the caller's deadline, so it went unanswered, in
// doubt, and its key was retired: a watch on it for the lease's whole life
// (stray_entries.h). 200 tries of 0.1-2 ms left 70 watches in etcd, and 55
// creates landed after their attempt had given up; a loop of such tries
// would have grown the watches without end. The caller's deadline now bounds
// a create's wait to be sent; once sent, it has command_timeout to be
// answered, and one never sent is not in doubt.
class ShortTries : public UnconfirmedWrite {
 protected:
  // Holds what `hold` takes in one manager, then runs `tries` tries (each
  // given a timeout of 0.1-2 ms: about the time a create takes here, so that
  // some answers come before the deadline and some after) in another, and
  // checks that they leave no watch in etcd and no create lands after its
  // attempt gave up. `warm_up` makes one try first: the lease and the watch
  // stream are then in place. Returns the holders' manager, still open.
  std::unique_ptr<LockManager> expect_no_create_in_doubt(
      int tries, const std::function<void(LockManager&)>& hold, const std::function<void(LockManager&)>& warm_up,
      const std::function<void(LockManager&, std::chrono::microseconds, int)>& try_for) {
    auto holder_manager = manager(20s);
    hold(*holder_manager);
    std::atomic<int> strays_removed{0};
    auto trying_options = options();
    trying_options.ttl = 20s;
    trying_options.log_sink = [&](LogLevel, std::string_view message, std::span<const LogField>) {
      if (message.find("nothing claims") != std::string_view::npos) ++strays_removed;
    };
    LockManager trying_manager(trying_options);
    warm_up(trying_manager);
    std::this_thread::sleep_for(1s);  // and the holders' deferred watches of their own keys
    const long before = watchers_in_etcd();
    EXPECT_GE(before, 0) << "etcd's /metrics could not be read";
    if (before < 0) return holder_manager;
    std::mt19937 random(7);
    for (int i = 0; i < tries; ++i) try_for(trying_manager, std::chrono::microseconds(100 + random() % 1900), i);
    EXPECT_TRUE(eventually([&] { return watchers_in_etcd() == before; }, 5s))
        << watchers_in_etcd() << " watchers in etcd against " << before << " before the tries";
    EXPECT_EQ(strays_removed.load(), 0) << "creates that landed after their attempt gave up";
    return holder_manager;
  }

  // A `hold` for expect_no_create_in_doubt(): takes lock "x" into `holding`.
  static std::function<void(LockManager&)> holds_x(std::shared_ptr<Lock>& holding) {
    return [&holding](LockManager& holder) {
      holding = holder.get_lock("x");
      holding->lock();
    };
  }
};

TEST_F(ShortTries, OfALockLeaveNoCreateInDoubt) {
  std::shared_ptr<Lock> holding;
  const auto holder = expect_no_create_in_doubt(
      200, holds_x(holding), [](LockManager& trier) { ASSERT_FALSE(trier.get_lock("x")->try_lock()); },
      [](LockManager& trier, std::chrono::microseconds timeout, int i) {
        EXPECT_FALSE(trier.get_lock("x")->try_lock_for(timeout)) << "try " << i;
      });
  EXPECT_EQ(entries("x"), 1);
  holding->unlock();
}

// The multi-lock sends its creates in a Txn of its own (MultiAcquisition::
// enqueue): it left 57-69 watches in etcd the same way.
TEST_F(ShortTries, OfAMultiLockLeaveNoCreateInDoubt) {
  std::shared_ptr<Lock> holding;
  const auto holder = expect_no_create_in_doubt(
      200, holds_x(holding),
      [](LockManager& trier) {
        ASSERT_FALSE(trier.get_multi_lock({"x", "y"})->try_lock());
      },
      [](LockManager& trier, std::chrono::microseconds timeout, int i) {
        EXPECT_FALSE(trier.get_multi_lock({"x", "y"})->try_lock_for(timeout)) << "try " << i;
      });
  EXPECT_TRUE(eventually([&] { return entries("x") == 1 && entries("y") == 0; }));
  holding->unlock();
}

TEST_F(ShortTries, OfASemaphoreASharedLockAndAnElectionLeaveNoCreateInDoubt) {
  std::optional<Permit> permit;
  std::shared_ptr<SharedLock> table;
  std::shared_ptr<Election> leader;
  const auto holder = expect_no_create_in_doubt(
      60,
      [&](LockManager& holder) {
        permit = holder.get_semaphore("s", 1)->acquire_permit();
        table = holder.get_shared_lock("t");
        table->lock();
        leader = holder.get_election("e");
        leader->campaign("a");
      },
      [](LockManager& trier) {
        ASSERT_FALSE(trier.get_semaphore("s", 1)->try_acquire_permit().has_value());
        ASSERT_FALSE(trier.get_shared_lock("t")->try_lock_shared());
      },
      [](LockManager& trier, std::chrono::microseconds timeout, int i) {
        EXPECT_FALSE(trier.get_semaphore("s", 1)->try_acquire_permit_for(timeout).has_value()) << "permit " << i;
        EXPECT_FALSE(trier.get_shared_lock("t")->try_lock_shared_for(timeout)) << "reader " << i;
        EXPECT_FALSE(trier.get_election("e")->campaign_for("b", timeout)) << "campaign " << i;
      });
  EXPECT_TRUE(eventually([&] { return entries("s") == 1 && entries("t") == 1 && entries("e") == 1; }));
  permit->release();
  table->unlock();
  leader->resign();
}

}  // namespace
}  // namespace etcdlock::testing
