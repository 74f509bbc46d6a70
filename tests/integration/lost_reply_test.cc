// The lost-reply matrix (issue 21): each write that etcdlock sends to etcd is
// made to commit while its reply is lost, one row per write of every
// primitive, and every row is held to the same three invariants.
//
// The rule under test: when the outcome of a write is unknown, local state
// takes the side that cannot admit a second holder. What was given up (an
// unlock, a downgrade's write side, a resign, a permit's release) is given up,
// and its lost token fires; what was taken (an enqueue) is not held until it
// is confirmed; an event (a note, a watch delete, a read) is acted on only
// when it confirms the caller's own entry.
//
// How a row runs. Participants A, B, C (and D, an admin) each have a manager
// of their own, hence a lease of their own, and one thread that makes all of
// their calls. After the row's setup, one write is armed
// (etcd/lost_replies.h: the next write at that call site that names the given
// key commits in etcd, and the client throws errc::unavailable as if its reply
// never came) and the row's call is made, by A unless said otherwise. The
// matrix watches for a moment ("after the fault"), disarms, and the row goes
// on with every later write answered ("after replies resumed"): what the row
// does next, then every wait ended and every hold given up, then a last round
// in which each participant acquires and releases once more (later writes
// answer normally, and nothing was left stuck).
//
// The hook loses one reply, and the replies that follow come: a watch event
// or a read may then correct the caller's state a millisecond after its call
// ended. The "stalled" rows give the writes that give something up the fault
// as a stalled connection makes it: A's manager reaches etcd through a proxy
// that holds every reply from just before the call until kSettle after it
// ended (the call's deadline passed, kStalledTimeout), so nothing comes back
// that could correct A's state in the meantime.
//
// Invariants, sampled every few milliseconds from before the armed call to
// the end of the row (a sample counts only if no participant's call started
// or ended while it was taken). Before the cleanup, the row waits until every
// unbacked claim and leftover entry is resolved or past its bound:
//  (1) Never more holders than the primitive allows: one for a lock or an
//      election, one writer alone or any readers for a read-write lock, the
//      limit (2) for the semaphore. Holders are the entries that hold by
//      etcd's state (the queue read with a raw client and judged by
//      detail::holding_entries; the keys of an ended lease go with it, so
//      every entry read is on a live lease) together with the holds that each
//      client claims by its own account (held(), held_by_this_thread(),
//      held_exclusively_by_this_thread(), held_shared_by_this_thread(),
//      is_leader(), Permit::held(), each with its fencing token). An entry and
//      a claim of the same participant and revision are one holder, a writer
//      if either says so. A claim is not counted while its participant is
//      inside the call that gives it up. In "late loss" rows, someone else's
//      write removes the holder's entry (a force unlock, an admin's revoke):
//      etcd lets the next holder in at once and the victim learns after the
//      fact (see hold.h), so there an unbacked claim is held to (2) instead.
//      One sample is enough: besides the periodic ones, a sample is taken as
//      each call ends, before its participant does anything else, so that a
//      claim that outlives the call giving it up is seen however briefly it
//      lasts. (A claim only ever appears at the end of a call that acquired,
//      and a sample whose accounts were not all stable is dropped, so the
//      staleness of the accounts cannot make two holders up.)
//  (2) Every claim is backed by its entry in etcd (the participant's lease, the
//      claim's revision, holding, and a writer's entry for a write hold), or
//      its lost token fires (or the claim ends) within kLossBound of the first
//      sample that found it unbacked: one command timeout plus 3 seconds.
//  (3) A participant with no call under way, that claims nothing and owes no
//      release, has no entry left in the queue after kLeftoverBound: one
//      command timeout plus 3 seconds (a background removal retries every
//      200 ms).
//
// clang-format off
// The matrix: row, armed site (whose key), and what the row does (setup →
// armed call → after replies resumed).
//   lock_lock                enqueue (A)        B holds → A.lock() queues behind B → B unlocks; A holds
//   lock_try_lock            enqueue (A)        free → A.try_lock() → B queues; A unlocks; B holds
//   lock_try_lock_for        enqueue (A)        B holds → A.try_lock_for(300 ms) times out → B unlocks
//   lock_unlock              release (A)        A holds, B waits → A.unlock() → B holds
//   lock_unlock_note         note (B)           A holds, B waits → A.unlock(): delete, then a note to B → B holds
//   lock_unlock_guard_note   note (B)           A holds, B waits → A.unlock() whose release answer is lost too: A's guard
//                                               finds the entry gone and notes B → B holds
//   lock_unlock_hand_over    release (A)        A held after waiting, C waits → A.unlock(): delete and note in one Txn → C holds
//   lock_unlock_known_successor release (A)     B holds, A and C wait → B.unlock(); A holds, its confirming read saw C →
//                                               A.unlock(): delete and note in one Txn, no read → C holds
//   lock_guarded_put         guarded_write      A holds, B waits → A.guarded_put() → A unlocks; B holds
//   async_lock               enqueue (A)        as lock_lock, every participant with Lock::async_lock and a LockHold
//   async_lock_for           enqueue (A)        as lock_try_lock_for, with async_lock_for(300 ms) (lock_timeout)
//   async_release            release (A)        as lock_unlock, with LockHold::release()
//   async_release_note       note (B)           as lock_unlock_note, with LockHold::release()
//   async_release_hand_over  release (A)        as lock_unlock_hand_over, with LockHold::release()
//   async_release_known_successor release (A)   as lock_unlock_known_successor, with LockHold::release()
//   async_guarded_put        guarded_write      as lock_guarded_put, with LockHold::guarded_put()
//   async_release_stalled    release, held      as lock_unlock, with LockHold::release()
//   async_campaign           enqueue (A)        as election_campaign, with Election::async_campaign and a Leadership
//   async_resign             resign (A)         as election_resign, with Leadership::resign()
//   async_resign_stalled     resign, held       as election_resign, with Leadership::resign()
//   async_shared_lock        enqueue (A)        as shared_lock, with SharedLock::async_lock(_shared) and SharedLockHold
//   async_shared_release     release (A)        as shared_unlock, with SharedLockHold::release()
//   multi_lock               multi_enqueue (A)  as lock_lock, every participant with a MultiLock on {x, y}
//   multi_try_lock           multi_enqueue (A)  as lock_try_lock, with MultiLocks
//   multi_try_lock_for       multi_enqueue (A)  as lock_try_lock_for, with MultiLocks
//   multi_unlock             multi_release (A)  as lock_unlock, with MultiLocks
//   multi_unlock_note        note (B)           as lock_unlock_note, with MultiLocks
//   multi_unlock_guard_note  note (B)           as lock_unlock_guard_note, with MultiLocks (a guard per key, a note each)
//   multi_unlock_hand_over   multi_release (A)  as lock_unlock_hand_over, with MultiLocks: the release Txn carries
//                                               C's note for both queues (one per inbox)
//   multi_guarded_put        guarded_write      as lock_guarded_put, with MultiLocks (the Txn compares both keys)
//   multi_force_unlock       force_unlock (A)   A holds, B waits → D.force_unlock(x) (late loss) → B holds
//                                               (the rows judge x's queue, and find y's empty at the end)
//   multi_force_unlock_guard_removal removal (A's y) as multi_force_unlock: A's lost hold retires its entry on y,
//                                               whose removal by the guard loses its reply; the retry's compare
//                                               fails (the entry is gone), its failure branch runs → B holds.
//                                               The row judges the outcome, not the note: B would also get in by
//                                               its deferred watch (ReviewGuard.GuardRemovalWhoseReplyIsLostStillNotes
//                                               times the note)
//   async_multi_lock         multi_enqueue (A)  as multi_lock, every participant with MultiLock::async_lock and a
//                                               MultiLockHold (the turns of x and y taken asynchronously first)
//   async_multi_lock_for     multi_enqueue (A)  as multi_try_lock_for, with async_lock_for(300 ms) (lock_timeout)
//   async_multi_release      multi_release (A)  as multi_unlock, with MultiLockHold::release()
//   async_multi_release_note note (B)           as multi_unlock_note, with MultiLockHold::release()
//   async_multi_guarded_put  guarded_write      as multi_guarded_put, with MultiLockHold::guarded_put()
//   async_multi_release_stalled multi_release, held as multi_unlock_stalled, with MultiLockHold::release()
//   shared_lock              enqueue (A)        B reads → A.lock() queues → B unlocks; A writes
//   shared_lock_shared       enqueue (A)        B writes → A.lock_shared() queues → B unlocks; A reads
//   shared_downgrade         downgrade (A)      A writes, B waits to read → A.lock_shared() (downgrade) → B reads
//   shared_unlock_shared     release (A)        A reads, B waits to write → A.unlock_shared() → B writes
//   shared_unlock            release (A)        A writes, B waits to read → A.unlock() → B reads
//   shared_guarded_delete    guarded_write      A writes, B waits to read → A.guarded_delete() → A unlocks; B reads
//   semaphore_acquire        enqueue (A)        B, C hold (limit 2) → A.acquire_permit() queues → B releases; A holds
//   semaphore_release        release (A)        A, B hold, C waits → A's Permit::release() → C holds
//   semaphore_release_note   note (C)           A, B hold, C waits → A's Permit::release(): delete, then a note to C → C holds
//   election_campaign        enqueue (A)        B leads → A.campaign() queues → B resigns; A leads
//   election_proclaim        proclaim (A)       A leads, B campaigns → A.proclaim() → A resigns; B leads
//   election_resign          resign (A)         A leads, B campaigns → A.resign() → B leads
//   admin_force_unlock       force_unlock (A)   A holds, B waits → D.force_unlock() (late loss) → B holds
//   admin_revoke_lease       lease_revoke (A)   A holds, B waits → D.revoke_lease(A's lease) (late loss) → B holds
//   manager_close            lease_revoke (A)   A holds, B waits → A's LockManager::close() → B holds
//   manager_close_note       note (B)           A holds, B waits → A's LockManager::close(): revoke, then a note to B → B holds
//   background_removal       removal (A)        B holds → A.try_lock_for(200 ms) times out: its entry's removal
//                                               loses its reply (the key is retired; its guard finds the entry
//                                               gone and writes nothing more) → B unlocks
//   session_lease_grant      lease_grant (any)  B holds, A's lease revoked → A.lock() takes a new lease → B unlocks; A holds
//   lock_unlock_stalled      release, held      as lock_unlock
//   lock_unlock_known_successor_stalled release, held  as lock_unlock_known_successor
//   multi_unlock_stalled     multi_release, held as multi_unlock
//   shared_downgrade_stalled downgrade, held    as shared_downgrade
//   semaphore_release_stalled release, held     as semaphore_release
//   election_resign_stalled  resign, held       as election_resign
// clang-format on
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "etcd/lost_replies.h"
#include "keys/holder_value.h"
#include "keys/key_layout.h"
#include "lock_fixture.h"
#include "queue/admission.h"
#include "tcp_proxy.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using detail::etcd::LostReplies;
namespace site = detail::etcd::write_site;

constexpr std::chrono::milliseconds kCommandTimeout = 2s;
// The command timeout of a caller whose replies are held (stalled rows): how
// long its call waits for the reply that does not come.
constexpr std::chrono::milliseconds kStalledTimeout = 1s;
// The bounds of (2) and (3): one command timeout, plus a margin for a machine
// whose two cores are shared with builds (a background removal retries every
// 200 ms).
constexpr std::chrono::milliseconds kLossBound = kCommandTimeout + 3s;
constexpr std::chrono::milliseconds kLeftoverBound = kCommandTimeout + 3s;
// Leases long enough that a process starved for seconds by other work, or
// whose replies are held, keeps them: a row's losses must be its fault's.
constexpr std::chrono::seconds kTtl{20};
constexpr std::chrono::milliseconds kDialTimeout = 20s;
// How long a scripted call that should end may take, on a slow machine.
constexpr std::chrono::milliseconds kCallBound = 30s;
// How long the matrix watches after the fault before replies resume.
constexpr std::chrono::milliseconds kSettle = 250ms;
// How long the last round waits to acquire.
constexpr std::chrono::milliseconds kLastRoundWait = 5s;
constexpr std::chrono::milliseconds kSamplePause = 5ms;
constexpr std::chrono::milliseconds kLookPause = 2ms;
constexpr std::chrono::milliseconds kRetry = 20ms;
constexpr std::int64_t kPermits = 2;
const std::string kName = "x";
// A multi-lock row's second name: the matrix judges the queue of kName, and
// checks that this one's is empty once the row has ended.
const std::string kOtherName = "y";

enum class Kind {
  lock,
  shared_lock,
  semaphore,
  election,
  multi_lock,
  async_lock,
  async_election,
  async_shared_lock,
  async_multi_lock,
};

// Lock::async_lock(_for), waited for: what the handler got.
std::pair<std::error_code, LockHold> acquire_async(Lock& lock, std::optional<std::chrono::milliseconds> timeout,
                                                   std::stop_token cancel) {
  std::promise<std::pair<std::error_code, LockHold>> delivered;
  auto handler = [&delivered](std::error_code ec, LockHold hold) { delivered.set_value({ec, std::move(hold)}); };
  if (timeout) {
    lock.async_lock_for(*timeout, handler, std::move(cancel));
  } else {
    lock.async_lock(handler, std::move(cancel));
  }
  return delivered.get_future().get();
}

// MultiLock::async_lock(_for), waited for: what the handler got.
std::pair<std::error_code, MultiLockHold> acquire_multi_async(MultiLock& lock,
                                                              std::optional<std::chrono::milliseconds> timeout,
                                                              std::stop_token cancel) {
  std::promise<std::pair<std::error_code, MultiLockHold>> delivered;
  auto handler = [&delivered](std::error_code ec, MultiLockHold hold) { delivered.set_value({ec, std::move(hold)}); };
  if (timeout) {
    lock.async_lock_for(*timeout, handler, std::move(cancel));
  } else {
    lock.async_lock(handler, std::move(cancel));
  }
  return delivered.get_future().get();
}

struct Participant;
// SharedLock::async_lock(_shared) for the participant, waited for; throws the error.
std::string take_shared_async(Participant& p, bool read);

// A hold as its client claims it.
struct Claim {
  std::int64_t token = 0;  // its fencing token: its entry's create revision
  bool exclusive = true;   // false for a read hold and for a permit
  std::stop_token lost;
};

// What a participant's thread last saw of it, and what it is doing.
struct Account {
  std::uint64_t epoch = 0;  // counts the starts and ends of its calls
  bool in_call = false;
  bool giving_up = false;  // the call under way gives up what is held
  std::string call;        // the call under way
  bool owes = false;       // a release is due (an acquisition returned, no release since)
  std::vector<Claim> claims;
};

struct Outcome {
  bool ended = false;
  bool threw = false;
  std::error_code code{};  // of the etcdlock::Error it threw
  std::string text{};      // what it returned, or what it threw
};

std::string describe(const Outcome& outcome) {
  if (!outcome.ended) return "did not end";
  if (!outcome.threw) return "returned" + (outcome.text.empty() ? std::string() : " " + outcome.text);
  return "threw " + outcome.text;
}

// One thread that makes a participant's calls, one at a time, and between
// them looks at what the participant claims (some claims can only be asked
// on the thread that holds).
class Actor {
 public:
  struct Look {
    std::vector<Claim> claims{};
    bool owes = false;
  };
  using Looker = std::function<Look()>;
  using Body = std::function<std::string()>;

  // `ended` runs on the actor's thread as each call ends, once its account
  // shows the call's end and before the next call starts.
  Actor(Looker look, std::function<void()> ended)
      : look_(std::move(look)), ended_(std::move(ended)), thread_([this] { loop(); }) {}
  ~Actor() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    changed_.notify_all();
    thread_.join();
  }
  Actor(const Actor&) = delete;
  Actor& operator=(const Actor&) = delete;

  std::uint64_t start(std::string what, bool gives_up, Body body) {
    std::lock_guard lock(mu_);
    queue_.push_back({next_id_, std::move(what), gives_up, std::move(body)});
    changed_.notify_all();
    return next_id_++;
  }
  // The outcome of call `id`, once it ended; ended == false if it had not
  // after `timeout`.
  Outcome wait(std::uint64_t id, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    changed_.wait_for(lock, timeout, [&] { return outcomes_.contains(id); });
    const auto found = outcomes_.find(id);
    return found == outcomes_.end() ? Outcome{} : found->second;
  }
  bool ended(std::uint64_t id) const {
    std::lock_guard lock(mu_);
    return outcomes_.contains(id);
  }
  bool wait_idle(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, timeout, [&] { return queue_.empty() && !account_.in_call; });
  }
  Account account() const {
    std::lock_guard lock(mu_);
    return account_;
  }
  std::uint64_t epoch() const {
    std::lock_guard lock(mu_);
    return account_.epoch;
  }

 private:
  struct Task {
    std::uint64_t id;
    std::string what;
    bool gives_up;
    Body body;
  };

  static Outcome run(const Body& body) {
    Outcome outcome{.ended = true};
    try {
      outcome.text = body();
    } catch (const Error& error) {
      outcome.threw = true;
      outcome.code = error.code();
      outcome.text = std::string(to_string(error.value())) + ": " + error.what();
    } catch (const std::exception& error) {
      outcome.threw = true;
      outcome.text = std::string("std::exception: ") + error.what();
    }
    return outcome;
  }

  void loop() {
    std::unique_lock lock(mu_);
    while (!stop_) {
      if (queue_.empty()) {
        lock.unlock();
        Look seen = look_();
        lock.lock();
        account_.claims = std::move(seen.claims);
        account_.owes = seen.owes;
        changed_.wait_for(lock, kLookPause, [&] { return stop_ || !queue_.empty(); });
        continue;
      }
      Task task = std::move(queue_.front());
      queue_.pop_front();
      ++account_.epoch;
      account_.in_call = true;
      account_.giving_up = task.gives_up;
      account_.call = task.what;
      lock.unlock();
      Outcome outcome = run(task.body);
      Look seen = look_();
      lock.lock();
      account_.claims = std::move(seen.claims);
      account_.owes = seen.owes;
      ++account_.epoch;
      account_.in_call = false;
      account_.giving_up = false;
      account_.call.clear();
      outcomes_[task.id] = std::move(outcome);
      changed_.notify_all();
      lock.unlock();
      ended_();
      lock.lock();
    }
  }

  const Looker look_;
  const std::function<void()> ended_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::deque<Task> queue_;
  std::map<std::uint64_t, Outcome> outcomes_;
  std::uint64_t next_id_ = 1;
  Account account_;
  bool stop_ = false;
  std::thread thread_;  // last: it uses everything above
};

// One client: a manager, the row's primitive, and the thread that calls it.
struct Participant {
  std::string name;
  std::unique_ptr<TcpProxy> link;  // between its manager and etcd, in stalled rows
  std::unique_ptr<LockManager> manager;
  std::shared_ptr<Lock> lock;
  std::shared_ptr<SharedLock> shared;
  std::shared_ptr<Semaphore> semaphore;
  std::shared_ptr<Election> election;
  std::shared_ptr<MultiLock> multi;  // on {kName, kOtherName}
  std::stop_source cancel;           // ends a wait under way
  std::atomic<bool> closed{false};   // its manager was closed
  std::uint64_t pending = 0;         // the call that queue() or start() began (main thread)
  std::string pending_call;
  std::set<std::int64_t> leases;  // every lease it was seen with (checker thread)
  // On the actor's thread only:
  std::optional<Permit> permit;
  std::optional<LockHold> hold;               // Kind::async_lock's
  std::optional<Leadership> leadership;       // Kind::async_election's
  std::optional<SharedLockHold> shared_hold;  // Kind::async_shared_lock's
  std::optional<MultiLockHold> multi_hold;    // Kind::async_multi_lock's
  bool owes = false;
  std::unique_ptr<Actor> actor;  // last: its thread looks at the members above

  Actor::Look look() const {
    Actor::Look seen{.owes = owes};
    if (lock) {
      const auto token = lock->fencing_token();
      if (token != 0 && (lock->held() || lock->held_by_this_thread()))
        seen.claims.push_back({token, true, lock->lost_token()});
    }
    if (shared) {
      const auto token = shared->fencing_token();
      const bool writing = shared->held_exclusively_by_this_thread();
      if (token != 0 && (writing || shared->held_shared_by_this_thread())) {
        seen.claims.push_back({token, writing, shared->lost_token()});
      }
    }
    if (shared_hold && shared_hold->held()) {
      const auto token = shared_hold->fencing_token();
      if (token != 0) seen.claims.push_back({token, shared_hold->writing(), shared_hold->lost_token()});
    }
    if (permit && permit->held()) {
      const auto token = permit->fencing_token();
      if (token != 0) seen.claims.push_back({token, false, permit->lost_token()});
    }
    if (multi_hold && multi_hold->held()) {
      const auto token = multi_hold->fencing_token(kName);
      if (token != 0) seen.claims.push_back({token, true, multi_hold->lost_token()});
    }
    if (multi) {
      const auto token = multi->fencing_token(kName);
      if (token != 0 && (multi->held() || multi->held_by_this_thread()))
        seen.claims.push_back({token, true, multi->lost_token()});
    }
    if (election) {
      const auto token = election->fencing_token();
      if (token != 0 && election->is_leader()) seen.claims.push_back({token, true, election->lost_token()});
    }
    return seen;
  }
};

class LostReply;

std::string take_shared_async(Participant& p, bool read) {
  std::promise<std::pair<std::error_code, SharedLockHold>> got;
  auto handler = [&got](std::error_code ec, SharedLockHold hold) { got.set_value({ec, std::move(hold)}); };
  if (read) {
    p.shared->async_lock_shared(handler, p.cancel.get_token());
  } else {
    p.shared->async_lock(handler, p.cancel.get_token());
  }
  auto [ec, hold] = got.get_future().get();
  if (ec) throw Error(static_cast<errc>(ec.value()), "SharedLock asynchronous lock: " + ec.message());
  p.shared_hold = std::move(hold);
  p.owes = true;
  return std::string();
}

// Whose key the armed write must name.
// a_other_key: A's entry in kOtherName's queue (a multi-lock's second name).
enum class Target { a_key, a_other_key, b_key, c_key, a_lease, data_key, any };

struct Row {
  std::string name{};
  Kind kind = Kind::lock;
  int participants = 2;  // A, B, and C if 3
  bool admin = false;    // and D
  std::string_view site{};
  Target target = Target::a_key;
  int count = 1;  // how many writes lose their replies
  bool late_loss = false;
  // Instead of the hook: A's replies are held from just before its call until
  // kSettle after the call ended (its deadline passed); `site` is the write it
  // sends.
  bool stalled = false;
  std::function<void(LostReply&)> setup{};
  std::function<void(LostReply&)> act{};
  std::function<void(LostReply&)> resume{};
};

void PrintTo(const Row& row, std::ostream* out) { *out << row.name; }

// An entry of the queue as etcd has it.
struct EtcdEntry {
  std::string key;
  std::int64_t lease = 0;
  std::int64_t revision = 0;
  bool holds = false;
  bool writer = true;  // not a reader's entry
};

class LostReply : public LockTest, public ::testing::WithParamInterface<Row> {
 public:
  ~LostReply() override {
    stop_checker();
    LostReplies::disarm();
    for (auto& p : participants_) p->cancel.request_stop();
    // Closing wakes every wait, so that each thread can be joined.
    for (auto& p : participants_) p->manager->close();
    for (auto& p : participants_) p->actor->wait_idle(kCallBound);
    participants_.clear();
  }

  Participant& A() { return *participants_.at(0); }
  Participant& B() { return *participants_.at(1); }
  Participant& C() { return *participants_.at(2); }
  Participant& D() { return *participants_.back(); }

  // Calls of the rows. Each is made on the participant's thread; the
  // synchronous ones return its outcome, printed with the time since the
  // armed call.

  // Acquires: a lock, the write side, a permit, the leadership.
  Outcome hold(Participant& p) {
    const auto outcome = run(p, acquire_call(), false, acquire_body(p));
    EXPECT_FALSE(outcome.threw) << p.name << "." << acquire_call() << " " << describe(outcome);
    return outcome;
  }
  // Starts the acquisition and returns once its entry is in etcd.
  void queue(Participant& p) { queue(p, acquire_call(), acquire_body(p)); }
  // B holds, A and then C queue, B releases: A holds, and the read that
  // confirmed its note found C right behind it, so A's release hands over
  // to C without a read.
  void a_holds_knowing_c() {
    hold(B());
    queue(A());
    queue(C());
    release(B());
    finish(A());
  }
  void queue_read(Participant& p) { queue(p, "lock_shared()", read_body(p)); }
  // Starts the acquisition and returns at once.
  void start(Participant& p) {
    p.pending_call = acquire_call();
    p.pending = p.actor->start(p.pending_call, false, acquire_body(p));
  }
  // Waits for the call that queue() or start() began.
  Outcome finish(Participant& p) {
    const auto outcome = wait(p, p.pending, p.pending_call);
    EXPECT_TRUE(outcome.ended) << p.name << "'s call did not end within " << kCallBound.count() << " ms";
    return outcome;
  }
  Outcome hold_read(Participant& p) { return run(p, "lock_shared()", false, read_body(p)); }
  // Gives up: unlock, a permit's release, resign.
  Outcome release(Participant& p) { return run(p, release_call(), true, release_body(p)); }
  Outcome release_read(Participant& p) {
    if (kind_ == Kind::async_shared_lock) return release(p);  // a hold object, either side
    return run(p, "unlock_shared()", true, [&p] {
      std::error_code ec;
      p.shared->unlock_shared(ec);
      p.owes = false;
      return ec ? std::string(to_string(static_cast<errc>(ec.value()))) : std::string();
    });
  }
  // lock_shared() by the writer: a downgrade, which gives up the write side.
  Outcome downgrade(Participant& p) {
    return run(p, "lock_shared() (downgrade)", true, [&p] {
      p.shared->lock_shared(p.cancel.get_token());
      return std::string();
    });
  }
  Outcome try_lock(Participant& p) {
    return run(p, "try_lock()", false, [&p] {
      p.owes = p.multi ? p.multi->try_lock() : p.lock->try_lock();
      return std::string(p.owes ? "true" : "false");
    });
  }
  Outcome try_lock_for(Participant& p, std::chrono::milliseconds timeout) {
    return run(p, "try_lock_for(" + std::to_string(timeout.count()) + " ms)", false, [this, &p, timeout] {
      if (kind_ == Kind::async_multi_lock) {
        auto [ec, hold] = acquire_multi_async(*p.multi, timeout, p.cancel.get_token());
        if (ec && ec != errc::lock_timeout)
          throw Error(static_cast<errc>(ec.value()), "MultiLock::async_lock_for: " + ec.message());
        p.owes = static_cast<bool>(hold);
        if (hold) p.multi_hold = std::move(hold);
      } else if (p.multi) {
        p.owes = p.multi->try_lock_for(timeout);
      } else if (kind_ == Kind::async_lock) {
        auto [ec, hold] = acquire_async(*p.lock, timeout, p.cancel.get_token());
        if (ec && ec != errc::lock_timeout)
          throw Error(static_cast<errc>(ec.value()), "async_lock_for: " + ec.message());
        p.owes = static_cast<bool>(hold);
        if (hold) p.hold = std::move(hold);
      } else {
        p.owes = p.lock->try_lock_for(timeout);
      }
      return std::string(p.owes ? "true" : "false");
    });
  }
  Outcome proclaim(Participant& p) {
    return run(p, "proclaim()", false,
               [&p] { return std::string(p.election->proclaim(p.name + " again") ? "true" : "false"); });
  }
  Outcome guarded_put(Participant& p) {
    return run(p, "guarded_put()", false, [this, &p] {
      const bool done = p.multi_hold ? p.multi_hold->guarded_put(data_key(), p.name)
                        : p.multi    ? p.multi->guarded_put(data_key(), p.name)
                        : p.hold     ? p.hold->guarded_put(data_key(), p.name)
                        : p.lock     ? p.lock->guarded_put(data_key(), p.name)
                                     : p.shared->guarded_put(data_key(), p.name);
      return std::string(done ? "true" : "false");
    });
  }
  Outcome guarded_delete(Participant& p) {
    return run(p, "guarded_delete()", false, [this, &p] {
      const bool done = p.lock ? p.lock->guarded_delete(data_key()) : p.shared->guarded_delete(data_key());
      return std::string(done ? "true" : "false");
    });
  }
  Outcome force_unlock(Participant& admin) {
    return run(admin, "force_unlock()", false,
               [&admin] { return std::string(admin.manager->force_unlock(kName) ? "true" : "false"); });
  }
  Outcome revoke_lease(Participant& admin, Participant& victim) {
    const auto lease = victim.manager->lease_id();
    return run(admin, "revoke_lease(" + victim.name + "'s lease)", false,
               [&admin, lease] { return std::string(admin.manager->revoke_lease(lease) ? "true" : "false"); });
  }
  Outcome close(Participant& p) {
    return run(p, "close()", true, [&p] {
      p.manager->close();
      p.closed = true;
      p.owes = false;
      return std::string();
    });
  }
  // Revokes `p`'s lease behind its back, with the raw client.
  void revoke_behind_the_back(Participant& p) {
    EXPECT_TRUE(raw_.lease_revoke(p.manager->lease_id(), in(kCommandTimeout)));
  }
  std::string data_key() const { return prefix_ + "/data"; }

  // The row.
  void run_row(const Row& row);

 private:
  void add(std::string name, const Row& row, bool admin);
  std::string armed_key(const Row& row);

  Outcome run(Participant& p, const std::string& what, bool gives_up, Actor::Body body) {
    return wait(p, p.actor->start(what, gives_up, std::move(body)), what);
  }
  Outcome wait(Participant& p, std::uint64_t id, const std::string& what) {
    const auto outcome = p.actor->wait(id, kCallBound);
    say(p.name + "." + what + " " + describe(outcome));
    return outcome;
  }
  void queue(Participant& p, const std::string& what, Actor::Body body) {
    const auto before = entries_of(p);
    p.pending_call = what;
    p.pending = p.actor->start(what, false, std::move(body));
    const auto queued = [&] {
      try {
        return entries_of(p) > before || p.actor->ended(p.pending);
      } catch (const Error&) {
        return false;  // the raw client's read failed: not known yet
      }
    };
    EXPECT_TRUE(eventually(queued, kCallBound)) << p.name << "." << what << " did not queue";
  }

  std::string acquire_call() const {
    switch (kind_) {
      case Kind::lock:
      case Kind::shared_lock:
      case Kind::multi_lock:
        return "lock()";
      case Kind::semaphore:
        return "acquire_permit()";
      case Kind::election:
        return "campaign()";
      case Kind::async_lock:
        return "async_lock()";
      case Kind::async_election:
        return "async_campaign()";
      case Kind::async_shared_lock:
        return "SharedLock::async_lock()";
      case Kind::async_multi_lock:
        return "MultiLock::async_lock()";
    }
    return "";
  }
  std::string release_call() const {
    switch (kind_) {
      case Kind::lock:
      case Kind::shared_lock:
      case Kind::multi_lock:
        return "unlock()";
      case Kind::semaphore:
        return "Permit::release()";
      case Kind::election:
        return "resign()";
      case Kind::async_lock:
        return "LockHold::release()";
      case Kind::async_election:
        return "Leadership::resign()";
      case Kind::async_shared_lock:
        return "SharedLockHold::release()";
      case Kind::async_multi_lock:
        return "MultiLockHold::release()";
    }
    return "";
  }
  static bool takes_part(const Participant& p) { return p.lock || p.shared || p.semaphore || p.election || p.multi; }
  Actor::Body acquire_body(Participant& p);
  Actor::Body read_body(Participant& p);
  Actor::Body release_body(Participant& p);
  Actor::Body release_everything_body(Participant& p);
  Actor::Body last_round_body(Participant& p);

  // The participant's entries in the queue, by its current lease.
  std::int64_t entries_of(Participant& p);
  bool queue_empty(const std::string& name = kName);
  static bool same_entries(const std::vector<EtcdEntry>& a, const std::vector<EtcdEntry>& b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const EtcdEntry& x, const EtcdEntry& y) {
      return x.key == y.key && x.revision == y.revision && x.writer == y.writer;
    });
  }
  std::vector<EtcdEntry> read_queue(const std::string& name = kName);

  void start_checker();
  void stop_checker();
  // One sample; false when a call started or ended while it was taken.
  bool sample();
  void sample_after_call();
  void judge(const std::vector<Account>& accounts, const std::vector<EtcdEntry>& queue);
  // Whether, within `timeout`, no claim or entry is waiting for its bound
  // to pass (when it passes, a violation is recorded).
  bool quiet(std::chrono::milliseconds timeout = 0ms);
  void record(const std::string& key, const std::string& text);
  void report();

  void say(const std::string& line) {
    std::ostringstream out;
    if (phase_ == Phase::setup) {
      out << "[lost-reply setup] " << line << "\n";
    } else {
      out << "[lost-reply +" << since_fault().count() << " ms] " << line << "\n";
    }
    std::cout << out.str() << std::flush;
  }
  std::chrono::milliseconds since_fault() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - fault_at_.load());
  }

  Kind kind_ = Kind::lock;
  bool late_loss_ = false;
  std::vector<std::unique_ptr<Participant>> participants_;
  std::atomic<Clock::time_point> fault_at_{Clock::now()};
  enum class Phase { setup, fault, resumed };
  std::atomic<Phase> phase_{Phase::setup};

  // The checker's state, under sample_mu_ but for what record() and report() share.
  std::mutex sample_mu_;
  bool checking_ = false;  // under sample_mu_
  struct Violation {
    std::string text;
    std::chrono::milliseconds first{0};  // since the armed call
    Phase phase = Phase::setup;
    int samples = 0;
  };
  std::mutex violations_mu_;
  std::map<std::string, Violation> violations_;                         // by what it is about
  std::map<std::pair<int, std::int64_t>, Clock::time_point> unbacked_;  // (2): since when
  std::map<int, Clock::time_point> leftover_;                           // (3): since when
  std::atomic<bool> pending_{false};                                    // a claim or an entry waits for its bound
  std::atomic<std::uint64_t> samples_{0};
  std::jthread checker_;
};

void LostReply::add(std::string name, const Row& row, bool admin) {
  auto p = std::make_unique<Participant>();
  p->name = std::move(name);
  auto options = this->options();
  options.owner = p->name;
  options.ttl = kTtl;
  options.dial_timeout = kDialTimeout;
  options.command_timeout = kCommandTimeout;
  if (row.stalled && p->name == "A") {
    const auto endpoint = etcd_.endpoints().at(0);
    p->link = std::make_unique<TcpProxy>(std::stoi(endpoint.substr(endpoint.rfind(':') + 1)));
    options.endpoints = {p->link->endpoint()};
    options.command_timeout = kStalledTimeout;
  }
  p->manager = std::make_unique<LockManager>(options);
  if (!admin) {
    switch (row.kind) {
      case Kind::lock:
      case Kind::async_lock:
        p->lock = p->manager->get_lock(kName, {.retry_interval = kRetry});
        break;
      case Kind::shared_lock:
      case Kind::async_shared_lock:
        p->shared = p->manager->get_shared_lock(kName, {.retry_interval = kRetry});
        break;
      case Kind::semaphore:
        p->semaphore = p->manager->get_semaphore(kName, kPermits, {.retry_interval = kRetry});
        break;
      case Kind::election:
      case Kind::async_election:
        p->election = p->manager->get_election(kName, {.retry_interval = kRetry});
        break;
      case Kind::multi_lock:
      case Kind::async_multi_lock:
        p->multi = p->manager->get_multi_lock({kOtherName, kName}, {.retry_interval = kRetry});
        break;
    }
  }
  Participant* raw = p.get();
  p->actor = std::make_unique<Actor>([raw] { return raw->look(); }, [this] { sample_after_call(); });
  participants_.push_back(std::move(p));
}

Actor::Body LostReply::acquire_body(Participant& p) {
  switch (kind_) {
    case Kind::lock:
      return [&p] {
        p.lock->lock(p.cancel.get_token());
        p.owes = true;
        return std::string();
      };
    case Kind::shared_lock:
      return [&p] {
        p.shared->lock(p.cancel.get_token());
        p.owes = true;
        return std::string();
      };
    case Kind::semaphore:
      return [&p] {
        p.permit = p.semaphore->acquire_permit(p.cancel.get_token());
        p.owes = true;
        return std::string();
      };
    case Kind::election:
      return [&p] {
        p.election->campaign(p.name, p.cancel.get_token());
        p.owes = true;
        return std::string();
      };
    case Kind::multi_lock:
      return [&p] {
        p.multi->lock(p.cancel.get_token());
        p.owes = true;
        return std::string();
      };
    case Kind::async_shared_lock:
      return [&p] { return take_shared_async(p, false); };
    case Kind::async_election:
      return [&p] {
        std::promise<std::pair<std::error_code, Leadership>> got;
        p.election->async_campaign(
            p.name,
            [&got](std::error_code ec, Leadership l) {
              got.set_value({ec, std::move(l)});
            },
            p.cancel.get_token());
        auto [ec, leadership] = got.get_future().get();
        if (ec) throw Error(static_cast<errc>(ec.value()), "async_campaign: " + ec.message());
        p.leadership = std::move(leadership);
        p.owes = true;
        return std::string();
      };
    case Kind::async_lock:
      return [&p] {
        auto [ec, hold] = acquire_async(*p.lock, std::nullopt, p.cancel.get_token());
        if (ec) throw Error(static_cast<errc>(ec.value()), "async_lock: " + ec.message());
        p.hold = std::move(hold);
        p.owes = true;
        return std::string();
      };
    case Kind::async_multi_lock:
      return [&p] {
        auto [ec, hold] = acquire_multi_async(*p.multi, std::nullopt, p.cancel.get_token());
        if (ec) throw Error(static_cast<errc>(ec.value()), "MultiLock::async_lock: " + ec.message());
        p.multi_hold = std::move(hold);
        p.owes = true;
        return std::string();
      };
  }
  return {};
}

Actor::Body LostReply::read_body(Participant& p) {
  if (kind_ == Kind::async_shared_lock) return [&p] { return take_shared_async(p, true); };
  return [&p] {
    p.shared->lock_shared(p.cancel.get_token());
    p.owes = true;
    return std::string();
  };
}

Actor::Body LostReply::release_body(Participant& p) {
  return [this, &p] {
    std::error_code ec;
    switch (kind_) {
      case Kind::lock:
        p.lock->unlock(ec);
        break;
      case Kind::shared_lock:
        p.shared->unlock(ec);
        break;
      case Kind::semaphore:
        if (p.permit) p.permit->release(ec);
        p.permit.reset();
        break;
      case Kind::election:
        p.election->resign();  // throws: then a release is still due, as the API says
        break;
      case Kind::multi_lock:
        p.multi->unlock(ec);
        break;
      case Kind::async_lock:
        if (p.hold) p.hold->release(ec);
        p.hold.reset();
        break;
      case Kind::async_election:
        if (p.leadership) p.leadership->resign(ec);
        p.leadership.reset();
        break;
      case Kind::async_shared_lock:
        if (p.shared_hold) p.shared_hold->release(ec);
        p.shared_hold.reset();
        break;
      case Kind::async_multi_lock:
        if (p.multi_hold) p.multi_hold->release(ec);
        p.multi_hold.reset();
        break;
    }
    p.owes = false;
    return ec ? std::string(to_string(static_cast<errc>(ec.value()))) : std::string();
  };
}

// Ends whatever the participant still holds, whatever state the row left it
// in; never throws.
Actor::Body LostReply::release_everything_body(Participant& p) {
  return [this, &p] {
    std::string done;
    const auto note = [&](const char* call, const std::error_code& ec) {
      if (ec != errc::lock_not_held)
        done += std::string(" ") + call + (ec ? ": " + std::string(to_string(static_cast<errc>(ec.value()))) : "");
      return ec == errc::lock_not_held;
    };
    for (int i = 0; i < 3; ++i) {
      std::error_code ec;
      if (kind_ == Kind::lock) {
        p.lock->unlock(ec);
        if (note("unlock", ec)) break;
      } else if (kind_ == Kind::multi_lock) {
        p.multi->unlock(ec);
        if (note("unlock", ec)) break;
      } else if (kind_ == Kind::shared_lock) {
        std::error_code read_ec;
        p.shared->unlock_shared(read_ec);
        p.shared->unlock(ec);
        if (note("unlock_shared", read_ec) && note("unlock", ec)) break;
      } else if (kind_ == Kind::semaphore) {
        if (p.permit) p.permit->release(ec);
        p.permit.reset();
        note("release", ec);
        break;
      } else if (kind_ == Kind::async_lock) {
        if (p.hold) p.hold->release(ec);
        p.hold.reset();
        note("LockHold::release", ec);
        break;
      } else if (kind_ == Kind::async_shared_lock) {
        if (p.shared_hold) p.shared_hold->release(ec);
        p.shared_hold.reset();
        note("SharedLockHold::release", ec);
        break;
      } else if (kind_ == Kind::async_multi_lock) {
        if (p.multi_hold) p.multi_hold->release(ec);
        p.multi_hold.reset();
        note("MultiLockHold::release", ec);
        break;
      } else if (kind_ == Kind::async_election) {
        if (p.leadership) p.leadership->resign(ec);
        p.leadership.reset();
        note("Leadership::resign", ec);
        break;
      } else {
        try {
          p.election->resign();
          done += " resign";
          break;
        } catch (const Error& error) {
          done += std::string(" resign: ") + std::string(to_string(error.value()));
        }
      }
    }
    p.owes = false;
    return done.empty() ? std::string("(nothing held)") : done.substr(1);
  };
}

// Acquires and releases once, with every write answered.
Actor::Body LostReply::last_round_body(Participant& p) {
  return [this, &p] {
    bool acquired = false;
    std::error_code ec;
    switch (kind_) {
      case Kind::lock:
        acquired = p.lock->try_lock_for(kLastRoundWait);
        if (acquired) p.lock->unlock(ec);
        break;
      case Kind::shared_lock:
        acquired = p.shared->try_lock_for(kLastRoundWait);
        if (acquired) p.shared->unlock(ec);
        break;
      case Kind::semaphore:
        if (auto permit = p.semaphore->try_acquire_permit_for(kLastRoundWait)) {
          acquired = true;
          permit->release(ec);
        }
        break;
      case Kind::election:
        acquired = p.election->campaign_for(p.name, kLastRoundWait);
        if (acquired) p.election->resign();
        break;
      case Kind::multi_lock:
        acquired = p.multi->try_lock_for(kLastRoundWait);
        if (acquired) p.multi->unlock(ec);
        break;
      case Kind::async_lock: {
        auto [error, hold] = acquire_async(*p.lock, kLastRoundWait, {});
        acquired = static_cast<bool>(hold);
        if (acquired) hold.release(ec);
        break;
      }
      case Kind::async_shared_lock: {
        std::promise<SharedLockHold> got;
        p.shared->async_lock_for(kLastRoundWait,
                                 [&got](std::error_code, SharedLockHold h) { got.set_value(std::move(h)); });
        auto hold = got.get_future().get();
        acquired = static_cast<bool>(hold);
        if (acquired) hold.release(ec);
        break;
      }
      case Kind::async_multi_lock: {
        auto [error, hold] = acquire_multi_async(*p.multi, kLastRoundWait, {});
        acquired = static_cast<bool>(hold);
        if (acquired) hold.release(ec);
        break;
      }
      case Kind::async_election: {
        std::promise<Leadership> got;
        p.election->async_campaign_for(p.name, kLastRoundWait,
                                       [&got](std::error_code, Leadership l) { got.set_value(std::move(l)); });
        auto leadership = got.get_future().get();
        acquired = static_cast<bool>(leadership);
        if (acquired) leadership.resign(ec);
        break;
      }
    }
    if (!acquired) return std::string("not acquired");
    return ec ? "acquired; release: " + std::string(to_string(static_cast<errc>(ec.value()))) : std::string("acquired");
  };
}

std::string LostReply::armed_key(const Row& row) {
  const auto dir = detail::queue_dir(prefix_, kName);
  switch (row.target) {
    case Target::a_key:
      return detail::queue_key(dir, A().manager->lease_id());
    case Target::a_other_key:
      return detail::queue_key(detail::queue_dir(prefix_, kOtherName), A().manager->lease_id());
    case Target::b_key:
      return detail::queue_key(dir, B().manager->lease_id());
    case Target::c_key:
      return detail::queue_key(dir, C().manager->lease_id());
    case Target::a_lease:
      return lease_hex(A().manager->lease_id());
    case Target::data_key:
      return data_key();
    case Target::any:
      return "";
  }
  return "";
}

std::vector<EtcdEntry> LostReply::read_queue(const std::string& name) {
  const auto dir = detail::queue_dir(prefix_, name);
  etcdserverpb::RangeRequest range;
  range.set_key(dir);
  range.set_range_end(detail::prefix_range_end(dir));
  range.set_sort_target(etcdserverpb::RangeRequest::CREATE);
  range.set_sort_order(etcdserverpb::RangeRequest::ASCEND);
  // Long enough for a loaded machine: a failed read judges nothing.
  const auto response = raw_.range(range, in(10s));
  std::vector<EtcdEntry> queue;
  std::vector<const std::string*> values;
  for (const auto& kv : response.kvs()) {
    if (!detail::is_own_entry(dir, kv.key())) continue;
    const auto value = detail::decode_holder_value(kv.value());
    queue.push_back({kv.key(), kv.lease(), kv.create_revision(), false,
                     !(value && value->side == detail::HolderValue::Side::read)});
    values.push_back(&kv.value());
  }
  const auto holds = detail::holding_entries(values);
  for (std::size_t i = 0; i < queue.size(); ++i) queue[i].holds = holds[i];
  return queue;
}

std::int64_t LostReply::entries_of(Participant& p) {
  const auto lease = p.manager->lease_id();
  const auto queue = read_queue();
  return std::count_if(queue.begin(), queue.end(), [&](const EtcdEntry& entry) { return entry.lease == lease; });
}

bool LostReply::queue_empty(const std::string& name) {
  try {
    return read_queue(name).empty();
  } catch (const Error&) {
    return false;  // the raw client's read failed: not known yet
  }
}

void LostReply::start_checker() {
  {
    std::lock_guard lock(sample_mu_);
    checking_ = true;
  }
  checker_ = std::jthread([this](std::stop_token stop) {
    while (!stop.stop_requested()) {
      sample();
      std::this_thread::sleep_for(kSamplePause);
    }
  });
}

void LostReply::stop_checker() {
  {
    // Once this is done, no actor's thread is inside sample(), nor enters it.
    std::lock_guard lock(sample_mu_);
    checking_ = false;
  }
  if (!checker_.joinable()) return;
  checker_.request_stop();
  checker_.join();
}

bool LostReply::sample() {
  std::lock_guard lock(sample_mu_);
  if (!checking_) return true;
  // Leases first: an entry on a lease not seen yet is taken for a stranger's.
  for (auto& p : participants_) {
    if (const auto lease = p->manager->lease_id(); lease != 0) p->leases.insert(lease);
  }
  std::vector<Account> accounts;
  for (auto& p : participants_) accounts.push_back(p->actor->account());
  std::vector<EtcdEntry> queue;
  try {
    queue = read_queue();
  } catch (const Error&) {
    return false;  // the raw client's read failed
  }
  for (std::size_t i = 0; i < participants_.size(); ++i) {
    if (participants_[i]->actor->epoch() != accounts[i].epoch) return false;  // a call started or ended meanwhile
  }
  ++samples_;
  judge(accounts, queue);
  return true;
}

// The state as a call leaves it is judged before the participant does
// anything else: a claim that outlives the call that gave it up may last
// only a few milliseconds, too short for the periodic samples to be sure
// to see it.
void LostReply::sample_after_call() {
  for (int attempt = 0; attempt < 5 && !sample(); ++attempt) {
  }
}

void LostReply::judge(const std::vector<Account>& accounts, const std::vector<EtcdEntry>& queue) {
  const auto now = Clock::now();
  const auto owner_of = [&](std::int64_t lease) {
    for (std::size_t i = 0; i < participants_.size(); ++i) {
      if (participants_[i]->leases.contains(lease)) return static_cast<int>(i);
    }
    return -1;
  };
  const auto name_of = [&](int who) { return who < 0 ? std::string("a stranger") : participants_[who]->name; };

  struct Holder {
    int who;
    std::int64_t token;
    bool writer;
    std::string why;
  };
  std::vector<Holder> holders;
  for (const auto& entry : queue) {
    if (!entry.holds) continue;
    holders.push_back({owner_of(entry.lease), entry.revision, entry.writer,
                       std::string("its entry holds in etcd") +
                           (kind_ == Kind::shared_lock ? (entry.writer ? " as a writer" : " as a reader") : "")});
  }

  std::map<std::pair<int, std::int64_t>, Clock::time_point> unbacked;
  for (std::size_t i = 0; i < accounts.size(); ++i) {
    const auto& account = accounts[i];
    const int who = static_cast<int>(i);
    if (account.giving_up) continue;
    for (const auto& claim : account.claims) {
      if (claim.lost.stop_requested()) continue;  // ended, and said so
      const auto entry = std::find_if(queue.begin(), queue.end(), [&](const EtcdEntry& e) {
        return owner_of(e.lease) == who && e.revision == claim.token;
      });
      const bool backed =
          entry != queue.end() && entry->holds && (kind_ != Kind::shared_lock || !claim.exclusive || entry->writer);
      const std::string mode = kind_ == Kind::shared_lock ? (claim.exclusive ? "write " : "read ") : "";
      if (!backed) {
        const auto key = std::make_pair(who, claim.token);
        const auto since = unbacked_.contains(key) ? unbacked_[key] : now;
        unbacked[key] = since;
        if (now - since > kLossBound) {
          const std::string etcd_has = entry == queue.end() ? "no entry of its own at that revision"
                                       : !entry->holds      ? "its entry, not holding"
                                                            : "its entry, as a reader's";
          record("(2) " + name_of(who) + "#" + std::to_string(claim.token),
                 "(2) " + name_of(who) + " claims a " + mode + "hold (fencing token " + std::to_string(claim.token) +
                     ") that etcd does not back (etcd has " + etcd_has +
                     ") and its lost token was not requested within " + std::to_string(kLossBound.count()) + " ms");
        }
        if (late_loss_) continue;
      }
      const auto same = std::find_if(holders.begin(), holders.end(),
                                     [&](const Holder& h) { return h.who == who && h.token == claim.token; });
      if (same != holders.end()) {
        same->writer = same->writer || claim.exclusive;
        same->why += "; claims a " + mode + "hold";
      } else {
        holders.push_back({who, claim.token, claim.exclusive, "claims a " + mode + "hold"});
      }
    }
  }
  unbacked_ = std::move(unbacked);

  bool too_many = false;
  switch (kind_) {
    case Kind::lock:
    case Kind::election:
    case Kind::multi_lock:
    case Kind::async_lock:
    case Kind::async_election:
    case Kind::async_multi_lock:
      too_many = holders.size() > 1;
      break;
    case Kind::shared_lock:
    case Kind::async_shared_lock:
      too_many =
          holders.size() > 1 && std::any_of(holders.begin(), holders.end(), [](const Holder& h) { return h.writer; });
      break;
    case Kind::semaphore:
      too_many = static_cast<std::int64_t>(holders.size()) > kPermits;
      break;
  }
  if (too_many) {
    std::sort(holders.begin(), holders.end(), [](const Holder& a, const Holder& b) { return a.token < b.token; });
    std::string key = "(1)";
    std::string text = "(1) " + std::to_string(holders.size()) + " holders at once:";
    for (const auto& h : holders) {
      key += " " + name_of(h.who) + "#" + std::to_string(h.token);
      text += " " + name_of(h.who) + " (fencing token " + std::to_string(h.token) + ": " + h.why + ");";
    }
    record(key, text);
  }

  std::map<int, Clock::time_point> leftover;
  for (std::size_t i = 0; i < accounts.size(); ++i) {
    const auto& account = accounts[i];
    const int who = static_cast<int>(i);
    if (account.in_call || account.owes || !account.claims.empty()) continue;
    const auto entry =
        std::find_if(queue.begin(), queue.end(), [&](const EtcdEntry& e) { return owner_of(e.lease) == who; });
    if (entry == queue.end()) continue;
    const auto since = leftover_.contains(who) ? leftover_[who] : now;
    leftover[who] = since;
    if (now - since > kLeftoverBound) {
      record("(3) " + name_of(who),
             "(3) " + name_of(who) + " has no call under way, claims nothing and owes no release, yet its entry " +
                 entry->key + " stayed in etcd for more than " + std::to_string(kLeftoverBound.count()) + " ms");
    }
  }
  leftover_ = std::move(leftover);
  pending_ = !unbacked_.empty() || !leftover_.empty();
}

bool LostReply::quiet(std::chrono::milliseconds timeout) {
  // Two samples from now on, so that the state after the last call is judged.
  const auto seen = samples_.load();
  if (!eventually([&] { return samples_.load() >= seen + 2; }, kCallBound)) return false;
  return eventually([&] { return !pending_.load(); }, timeout);
}

void LostReply::record(const std::string& key, const std::string& text) {
  std::lock_guard lock(violations_mu_);
  auto [found, fresh] = violations_.try_emplace(key);
  if (fresh) {
    found->second = {text, since_fault(), phase_.load(), 0};
    say("violation: " + text);
  }
  ++found->second.samples;
}

void LostReply::report() {
  std::lock_guard lock(violations_mu_);
  for (const auto& [key, violation] : violations_) {
    const char* phase = violation.phase == Phase::setup   ? "during the setup"
                        : violation.phase == Phase::fault ? "after the fault"
                                                          : "after replies resumed";
    ADD_FAILURE() << violation.text << " [first seen " << violation.first.count() << " ms after the armed call, "
                  << phase << "; in " << violation.samples << " samples]";
  }
}

void LostReply::run_row(const Row& row) {
  kind_ = row.kind;
  late_loss_ = row.late_loss;
  static const char* const kNames[] = {"A", "B", "C"};
  for (int i = 0; i < row.participants; ++i) add(kNames[i], row, false);
  if (row.admin) add("D", row, true);

  if (row.setup) row.setup(*this);
  ASSERT_FALSE(HasFailure()) << "the setup failed: the row tests nothing";
  start_checker();
  EXPECT_TRUE(quiet(kLeftoverBound + 500ms)) << "a claim or an entry was waiting for its bound before the fault";

  // The fault.
  fault_at_ = Clock::now();
  phase_ = Phase::fault;
  if (row.stalled) {
    const auto before = read_queue();
    say("A's replies held");
    A().link->hold_replies();
    row.act(*this);
    std::this_thread::sleep_for(kSettle);  // still held: nothing that could correct A's state comes back
    EXPECT_FALSE(same_entries(before, read_queue()))
        << "A's " << row.site << " write did not reach etcd: the row did not test its fault";
    A().link->resume_replies();
  } else {
    const int dropped = LostReplies::dropped(row.site);
    const auto key = armed_key(row);
    say("armed " + std::string(row.site) + " for \"" + key + "\"" +
        (row.count > 1 ? " x" + std::to_string(row.count) : ""));
    LostReplies::arm(row.site, key, row.count);
    row.act(*this);
    EXPECT_TRUE(eventually([&] { return LostReplies::dropped(row.site) >= dropped + row.count; }, kCallBound))
        << "the armed write at " << row.site << " was never sent (" << LostReplies::dropped(row.site) - dropped
        << " of " << row.count << "): the row did not test its fault";
    std::this_thread::sleep_for(kSettle);  // the checker samples meanwhile
  }

  // Later writes are answered.
  LostReplies::disarm();
  phase_ = Phase::resumed;
  say("replies resume");
  if (row.resume) row.resume(*this);
  // An unbacked claim or a leftover entry is given its whole bound before the
  // cleanup ends it.
  quiet(kLeftoverBound + 500ms);
  for (auto& p : participants_) p->cancel.request_stop();
  for (auto& p : participants_) {
    EXPECT_TRUE(p->actor->wait_idle(kCallBound))
        << p->name << "'s " << p->actor->account().call << " did not end once cancelled";
  }
  for (auto& p : participants_) {
    if (!p->closed && takes_part(*p)) {
      run(*p, "release everything", true, release_everything_body(*p));
    }
  }
  EXPECT_TRUE(eventually([&] { return queue_empty(); }, kLeftoverBound))
      << "entries stayed in the queue once every participant had ended its waits and holds";
  if (kind_ == Kind::multi_lock || kind_ == Kind::async_multi_lock) {
    EXPECT_TRUE(eventually([&] { return queue_empty(kOtherName); }, kLeftoverBound))
        << "entries stayed in the queue of " << kOtherName << " once every participant had ended";
  }
  for (auto& p : participants_) {
    if (p->closed || !takes_part(*p)) continue;
    const auto outcome = run(*p, "acquires and releases (last round)", false, last_round_body(*p));
    EXPECT_EQ(describe(outcome), "returned acquired")
        << p->name << " could not take " << kName << " again once replies resumed";
  }
  EXPECT_TRUE(quiet(kLeftoverBound + 500ms))
      << "a claim or an entry was still waiting for its bound when the row ended";
  stop_checker();
  report();
}

TEST_P(LostReply, InvariantsHold) { run_row(GetParam()); }

const std::vector<Row>& rows() {
  using M = LostReply;
  static const std::vector<Row> all = {
      // Lock
      {.name = "lock_lock",
       .site = site::enqueue,
       .setup = [](M& m) { m.hold(m.B()); },
       .act = [](M& m) { m.start(m.A()); },
       .resume =
           [](M& m) {
             m.release(m.B());
             m.finish(m.A());
           }},
      {.name = "lock_try_lock",
       .site = site::enqueue,
       .act = [](M& m) { m.try_lock(m.A()); },
       .resume =
           [](M& m) {
             m.queue(m.B());
             m.release(m.A());
             m.finish(m.B());
           }},
      {.name = "lock_try_lock_for",
       .site = site::enqueue,
       .setup = [](M& m) { m.hold(m.B()); },
       .act = [](M& m) { m.try_lock_for(m.A(), 300ms); },
       .resume = [](M& m) { m.release(m.B()); }},
      {.name = "lock_unlock",
       .site = site::release,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      {.name = "lock_unlock_note",
       .site = site::note,
       .target = Target::b_key,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      {.name = "lock_unlock_guard_note",
       .site = site::note,
       .target = Target::b_key,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act =
           [](M& m) {
             // The release commits unanswered; the guard of its key then
             // writes the note that the release's answer would have.
             LostReplies::arm(site::release);
             m.release(m.A());
           },
       .resume = [](M& m) { m.finish(m.B()); }},
      {.name = "lock_unlock_hand_over",
       .participants = 3,
       .site = site::release,
       .setup =
           [](M& m) {
             // A waits first: its next release reads the head and hands over in one Txn.
             m.hold(m.B());
             m.queue(m.A());
             m.release(m.B());
             m.finish(m.A());
             m.queue(m.C());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.C()); }},
      {.name = "lock_unlock_known_successor",
       .participants = 3,
       .site = site::release,
       .setup = [](M& m) { m.a_holds_knowing_c(); },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.C()); }},
      {.name = "lock_guarded_put",
       .site = site::guarded_write,
       .target = Target::data_key,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.guarded_put(m.A()); },
       .resume =
           [](M& m) {
             m.release(m.A());
             m.finish(m.B());
           }},
      // Lock's asynchronous acquisition: the LockHold's own release
      {.name = "async_lock",
       .kind = Kind::async_lock,
       .site = site::enqueue,
       .setup = [](M& m) { m.hold(m.B()); },
       .act = [](M& m) { m.start(m.A()); },
       .resume =
           [](M& m) {
             m.release(m.B());
             m.finish(m.A());
           }},
      {.name = "async_lock_for",
       .kind = Kind::async_lock,
       .site = site::enqueue,
       .setup = [](M& m) { m.hold(m.B()); },
       .act = [](M& m) { m.try_lock_for(m.A(), 300ms); },
       .resume = [](M& m) { m.release(m.B()); }},
      {.name = "async_release",
       .kind = Kind::async_lock,
       .site = site::release,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      {.name = "async_release_note",
       .kind = Kind::async_lock,
       .site = site::note,
       .target = Target::b_key,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      {.name = "async_release_hand_over",
       .kind = Kind::async_lock,
       .participants = 3,
       .site = site::release,
       .setup =
           [](M& m) {
             m.hold(m.B());
             m.queue(m.A());
             m.release(m.B());
             m.finish(m.A());
             m.queue(m.C());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.C()); }},
      {.name = "async_release_known_successor",
       .kind = Kind::async_lock,
       .participants = 3,
       .site = site::release,
       .setup = [](M& m) { m.a_holds_knowing_c(); },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.C()); }},
      {.name = "async_guarded_put",
       .kind = Kind::async_lock,
       .site = site::guarded_write,
       .target = Target::data_key,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.guarded_put(m.A()); },
       .resume =
           [](M& m) {
             m.release(m.A());
             m.finish(m.B());
           }},
      {.name = "async_release_stalled",
       .kind = Kind::async_lock,
       .site = site::release,
       .stalled = true,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      // MultiLock on {x, y}: the matrix judges x's queue
      {.name = "multi_lock",
       .kind = Kind::multi_lock,
       .site = site::multi_enqueue,
       .setup = [](M& m) { m.hold(m.B()); },
       .act = [](M& m) { m.start(m.A()); },
       .resume =
           [](M& m) {
             m.release(m.B());
             m.finish(m.A());
           }},
      {.name = "multi_try_lock",
       .kind = Kind::multi_lock,
       .site = site::multi_enqueue,
       .act = [](M& m) { m.try_lock(m.A()); },
       .resume =
           [](M& m) {
             m.queue(m.B());
             m.release(m.A());
             m.finish(m.B());
           }},
      {.name = "multi_try_lock_for",
       .kind = Kind::multi_lock,
       .site = site::multi_enqueue,
       .setup = [](M& m) { m.hold(m.B()); },
       .act = [](M& m) { m.try_lock_for(m.A(), 300ms); },
       .resume = [](M& m) { m.release(m.B()); }},
      {.name = "multi_unlock",
       .kind = Kind::multi_lock,
       .site = site::multi_release,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      {.name = "multi_unlock_note",
       .kind = Kind::multi_lock,
       .site = site::note,
       .target = Target::b_key,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      {.name = "multi_unlock_guard_note",
       .kind = Kind::multi_lock,
       .site = site::note,
       .target = Target::b_key,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act =
           [](M& m) {
             LostReplies::arm(site::multi_release);
             m.release(m.A());
           },
       .resume = [](M& m) { m.finish(m.B()); }},
      {.name = "multi_unlock_hand_over",
       .kind = Kind::multi_lock,
       .participants = 3,
       .site = site::multi_release,
       .setup =
           [](M& m) {
             // A waits first: its next release reads the heads and hands over in one Txn.
             m.hold(m.B());
             m.queue(m.A());
             m.release(m.B());
             m.finish(m.A());
             m.queue(m.C());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.C()); }},
      {.name = "multi_guarded_put",
       .kind = Kind::multi_lock,
       .site = site::guarded_write,
       .target = Target::data_key,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.guarded_put(m.A()); },
       .resume =
           [](M& m) {
             m.release(m.A());
             m.finish(m.B());
           }},
      {.name = "multi_force_unlock",
       .kind = Kind::multi_lock,
       .admin = true,
       .site = site::force_unlock,
       .late_loss = true,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.force_unlock(m.D()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      {.name = "multi_force_unlock_guard_removal",
       .kind = Kind::multi_lock,
       .admin = true,
       .site = site::removal,
       .target = Target::a_other_key,
       .late_loss = true,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.force_unlock(m.D()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      // MultiLock's asynchronous acquisition: the MultiLockHold's own release
      {.name = "async_multi_lock",
       .kind = Kind::async_multi_lock,
       .site = site::multi_enqueue,
       .setup = [](M& m) { m.hold(m.B()); },
       .act = [](M& m) { m.start(m.A()); },
       .resume =
           [](M& m) {
             m.release(m.B());
             m.finish(m.A());
           }},
      {.name = "async_multi_lock_for",
       .kind = Kind::async_multi_lock,
       .site = site::multi_enqueue,
       .setup = [](M& m) { m.hold(m.B()); },
       .act = [](M& m) { m.try_lock_for(m.A(), 300ms); },
       .resume = [](M& m) { m.release(m.B()); }},
      {.name = "async_multi_release",
       .kind = Kind::async_multi_lock,
       .site = site::multi_release,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      {.name = "async_multi_release_note",
       .kind = Kind::async_multi_lock,
       .site = site::note,
       .target = Target::b_key,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      {.name = "async_multi_guarded_put",
       .kind = Kind::async_multi_lock,
       .site = site::guarded_write,
       .target = Target::data_key,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.guarded_put(m.A()); },
       .resume =
           [](M& m) {
             m.release(m.A());
             m.finish(m.B());
           }},
      {.name = "async_multi_release_stalled",
       .kind = Kind::async_multi_lock,
       .site = site::multi_release,
       .stalled = true,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      // SharedLock
      {.name = "shared_lock",
       .kind = Kind::shared_lock,
       .site = site::enqueue,
       .setup = [](M& m) { m.hold_read(m.B()); },
       .act = [](M& m) { m.start(m.A()); },
       .resume =
           [](M& m) {
             m.release_read(m.B());
             m.finish(m.A());
           }},
      {.name = "shared_lock_shared",
       .kind = Kind::shared_lock,
       .site = site::enqueue,
       .setup = [](M& m) { m.hold(m.B()); },
       .act = [](M& m) { m.queue_read(m.A()); },
       .resume =
           [](M& m) {
             m.release(m.B());
             m.finish(m.A());
           }},
      {.name = "shared_downgrade",
       .kind = Kind::shared_lock,
       .site = site::downgrade,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue_read(m.B());
           },
       .act = [](M& m) { m.downgrade(m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      {.name = "shared_unlock_shared",
       .kind = Kind::shared_lock,
       .site = site::release,
       .setup =
           [](M& m) {
             m.hold_read(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.release_read(m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      {.name = "shared_unlock",
       .kind = Kind::shared_lock,
       .site = site::release,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue_read(m.B());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      {.name = "shared_guarded_delete",
       .kind = Kind::shared_lock,
       .site = site::guarded_write,
       .target = Target::data_key,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue_read(m.B());
           },
       .act = [](M& m) { m.guarded_delete(m.A()); },
       .resume =
           [](M& m) {
             m.release(m.A());
             m.finish(m.B());
           }},
      // Semaphore, limit 2
      {.name = "semaphore_acquire",
       .kind = Kind::semaphore,
       .participants = 3,
       .site = site::enqueue,
       .setup =
           [](M& m) {
             m.hold(m.B());
             m.hold(m.C());
           },
       .act = [](M& m) { m.start(m.A()); },
       .resume =
           [](M& m) {
             m.release(m.B());
             m.finish(m.A());
           }},
      {.name = "semaphore_release",
       .kind = Kind::semaphore,
       .participants = 3,
       .site = site::release,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.hold(m.B());
             m.queue(m.C());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.C()); }},
      {.name = "semaphore_release_note",
       .kind = Kind::semaphore,
       .participants = 3,
       .site = site::note,
       .target = Target::c_key,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.hold(m.B());
             m.queue(m.C());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.C()); }},
      // Election
      {.name = "election_campaign",
       .kind = Kind::election,
       .site = site::enqueue,
       .setup = [](M& m) { m.hold(m.B()); },
       .act = [](M& m) { m.start(m.A()); },
       .resume =
           [](M& m) {
             m.release(m.B());
             m.finish(m.A());
           }},
      {.name = "election_proclaim",
       .kind = Kind::election,
       .site = site::proclaim,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.proclaim(m.A()); },
       .resume =
           [](M& m) {
             m.release(m.A());
             m.finish(m.B());
           }},
      {.name = "election_resign",
       .kind = Kind::election,
       .site = site::resign,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      // Election's asynchronous campaign: the Leadership's own resign
      {.name = "async_campaign",
       .kind = Kind::async_election,
       .site = site::enqueue,
       .setup = [](M& m) { m.hold(m.B()); },
       .act = [](M& m) { m.start(m.A()); },
       .resume =
           [](M& m) {
             m.release(m.B());
             m.finish(m.A());
           }},
      {.name = "async_resign",
       .kind = Kind::async_election,
       .site = site::resign,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      {.name = "async_resign_stalled",
       .kind = Kind::async_election,
       .site = site::resign,
       .stalled = true,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      // SharedLock's asynchronous sides: SharedLockHold's own release
      {.name = "async_shared_lock",
       .kind = Kind::async_shared_lock,
       .site = site::enqueue,
       .setup = [](M& m) { m.hold_read(m.B()); },
       .act = [](M& m) { m.start(m.A()); },
       .resume =
           [](M& m) {
             m.release_read(m.B());
             m.finish(m.A());
           }},
      {.name = "async_shared_release",
       .kind = Kind::async_shared_lock,
       .site = site::release,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue_read(m.B());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      // Admin and manager
      {.name = "admin_force_unlock",
       .admin = true,
       .site = site::force_unlock,
       .late_loss = true,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.force_unlock(m.D()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      {.name = "admin_revoke_lease",
       .admin = true,
       .site = site::lease_revoke,
       .target = Target::a_lease,
       .late_loss = true,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.revoke_lease(m.D(), m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      {.name = "manager_close",
       .site = site::lease_revoke,
       .target = Target::a_lease,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.close(m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      {.name = "manager_close_note",
       .site = site::note,
       .target = Target::b_key,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.close(m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      // The removal of a timed-out wait's entry, and its retry in the background.
      {.name = "background_removal",
       .site = site::removal,
       .setup = [](M& m) { m.hold(m.B()); },
       .act = [](M& m) { m.try_lock_for(m.A(), 200ms); },
       .resume = [](M& m) { m.release(m.B()); }},
      {.name = "session_lease_grant",
       .site = site::lease_grant,
       .target = Target::any,
       .setup =
           [](M& m) {
             m.hold(m.B());
             m.revoke_behind_the_back(m.A());
           },
       .act = [](M& m) { m.start(m.A()); },
       .resume =
           [](M& m) {
             m.release(m.B());
             m.finish(m.A());
           }},
      // The give-up writes again, with the caller's replies held rather than one
      // reply lost: the reads and watch events that could correct its state
      // after the call wait too, as when a connection stalls.
      {.name = "lock_unlock_stalled",
       .site = site::release,
       .stalled = true,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      {.name = "lock_unlock_known_successor_stalled",
       .participants = 3,
       .site = site::release,
       .stalled = true,
       .setup = [](M& m) { m.a_holds_knowing_c(); },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.C()); }},
      {.name = "multi_unlock_stalled",
       .kind = Kind::multi_lock,
       .site = site::multi_release,
       .stalled = true,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      {.name = "shared_downgrade_stalled",
       .kind = Kind::shared_lock,
       .site = site::downgrade,
       .stalled = true,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue_read(m.B());
           },
       .act = [](M& m) { m.downgrade(m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
      {.name = "semaphore_release_stalled",
       .kind = Kind::semaphore,
       .participants = 3,
       .site = site::release,
       .stalled = true,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.hold(m.B());
             m.queue(m.C());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.C()); }},
      {.name = "election_resign_stalled",
       .kind = Kind::election,
       .site = site::resign,
       .stalled = true,
       .setup =
           [](M& m) {
             m.hold(m.A());
             m.queue(m.B());
           },
       .act = [](M& m) { m.release(m.A()); },
       .resume = [](M& m) { m.finish(m.B()); }},
  };
  return all;
}

INSTANTIATE_TEST_SUITE_P(Rows, LostReply, ::testing::ValuesIn(rows()),
                         [](const ::testing::TestParamInfo<Row>& info) { return info.param.name; });

}  // namespace
}  // namespace etcdlock::testing
