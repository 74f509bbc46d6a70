#include "queue/stray_entries.h"

#include <algorithm>
#include <vector>

#include "etcd/lost_replies.h"
#include "keys/key_layout.h"
#include "keys/queue_requests.h"
#include "queue/hand_over.h"

namespace etcdlock::detail {
namespace {

constexpr auto kRetryPause = std::chrono::milliseconds(200);
// A delete or read that etcd refused (permission denied, say) is tried again
// this much later: it may succeed once an operator restores the permission.
constexpr auto kRefusedRetryPause = std::chrono::seconds(2);
// How often the guards of leases this manager no longer renews are checked
// against etcd: such a lease ends within one TTL.
constexpr auto kSweepInterval = std::chrono::seconds(1);

}  // namespace

// Forwards the watch of a retired key to the worker: the hub's thread must
// not wait for etcd. The hub may call it after the guard is gone.
class StrayEntries::GuardWatch final : public etcd::WatchListener {
 public:
  GuardWatch(StrayEntries& strays, std::string key, std::int64_t lease_id)
      : strays_(strays), key_(std::move(key)), lease_id_(lease_id) {}
  void on_created(std::int64_t) override { post_check(); }  // what came before the watch
  void on_events(std::span<const etcd::WatchEvent> events) override {
    for (const auto& event : events) {
      if (event.deleted || event.lease != lease_id_) continue;  // only entries on our lease are ours to remove
      strays_.worker_.post(
          [&strays = strays_, key = key_, revision = event.create_revision] { strays.remove(key, revision); });
    }
  }
  void on_gap() override { post_check(); }
  void on_failed(const std::string& reason) override {
    strays_.log_(LogLevel::error, "etcd refused to watch a retired queue key; an entry created late under it stays",
                 {{"key", key_}, {"reason", reason}});
  }

 private:
  void post_check() {
    strays_.worker_.post([&strays = strays_, key = key_] { strays.check(key); });
  }

  StrayEntries& strays_;
  const std::string key_;
  const std::int64_t lease_id_;
};

StrayEntries::StrayEntries(const etcd::Client& client, etcd::WatchHub& watches, const Logger& log,
                           SessionSource& sessions, Worker& worker)
    : client_(client), watches_(watches), log_(log), sessions_(sessions), worker_(worker) {}

StrayEntries::~StrayEntries() { close(); }

void StrayEntries::retire(const std::string& key, std::int64_t lease_id, std::int64_t create_revision) {
  bool post_sweep = false;
  bool check_again = false;
  {
    MutexLock lock(mu_);
    if (closed_) return;
    if (const auto found = guards_.find(key); found != guards_.end()) {
      // Guarded already, with no entry known to be ours (a multi-lock's
      // other name, retired at its loss): now one is, the entry of a delete
      // whose answer was lost. The guard's check may have found the key gone
      // and noted no one, and close() reads keys_and_ours(): record it, and
      // check again, which notes the waiter behind it once it is gone.
      if (create_revision == 0 || found->second.ours_revision != 0 || found->second.lease_id != lease_id) return;
      found->second.ours_revision = create_revision;
      check_again = true;
    } else {
      guards_[key] = Guard{lease_id, 0, create_revision};
      post_sweep = !std::exchange(sweep_posted_, true);
    }
  }
  if (check_again) {
    worker_.post([this, key] { check(key); });
    return;
  }
  // Added outside mu_: the hub may call the listener at once.
  const auto watch =
      watches_.add(key, "", 0, std::make_shared<GuardWatch>(*this, key, lease_id), etcd::WatchHub::Events::puts_only);
  bool stale = false;
  {
    MutexLock lock(mu_);
    const auto found = guards_.find(key);
    if (found != guards_.end() && !closed_) {
      found->second.watch = watch;
    } else {
      stale = true;  // closed meanwhile
    }
  }
  if (stale) watches_.remove(watch);
  if (post_sweep) worker_.post_at(SteadyClock::now() + kSweepInterval, [this] { sweep(); });
}

bool StrayEntries::retired(const std::string& key) const {
  MutexLock lock(mu_);
  return guards_.contains(key);
}

std::size_t StrayEntries::size() const {
  MutexLock lock(mu_);
  return guards_.size();
}

std::vector<std::pair<std::string, std::int64_t>> StrayEntries::keys_and_ours() const {
  MutexLock lock(mu_);
  std::vector<std::pair<std::string, std::int64_t>> keys;
  keys.reserve(guards_.size());
  for (const auto& [key, guard] : guards_) keys.emplace_back(key, guard.ours_revision);
  return keys;
}

std::optional<StrayEntries::Guard> StrayEntries::guard_of(const std::string& key) const {
  MutexLock lock(mu_);
  const auto found = guards_.find(key);
  if (found == guards_.end() || closed_) return std::nullopt;
  return found->second;
}

void StrayEntries::post_note(const QueueDir& queue, const pb::RangeResponse& first, std::int64_t ours) {
  worker_.post([this, queue, first, ours] { note_first_behind(client_, queue, first, ours); });
}

void StrayEntries::check(const std::string& key) {
  if (!guard_of(key)) return;
  // Asynchronous: a slow etcd must not hold the worker up (see Worker). The
  // reply comes on a gRPC thread; what it leads to is posted to the worker.
  client_.txn_async(entry_and_first_read(QueueDir{queue_dir_of_entry(key)}, key), client_.command_deadline(), {},
                    [this, key](pb::TxnResponse&& read, const Error* error) {
                      if (error) {
                        if (error->value() == errc::closed) return;  // the client closes: so does the guard
                        // Refused (permission denied, say) as well as
                        // unanswered: the entry may block the queue for the
                        // lease's whole life, so try again, slowly when refused.
                        const bool refused = error->value() != errc::unavailable;
                        if (refused) {
                          log_(LogLevel::error, "could not read a retired queue key; trying again",
                               {{"key", key}, {"error", error->what()}});
                        }
                        worker_.post_at(SteadyClock::now() + (refused ? kRefusedRetryPause : kRetryPause),
                                        [this, key] { check(key); });
                        return;
                      }
                      const auto guard = guard_of(key);
                      if (!guard) return;  // forgotten or closed meanwhile
                      const auto& found = read.responses(0).response_range();
                      if (found.kvs_size() == 0) {
                        // Gone: deleted by our release whose answer never
                        // came, or by someone else. Whoever is first now holds.
                        if (guard->ours_revision != 0) {
                          post_note(QueueDir{queue_dir_of_entry(key)}, read.responses(1).response_range(),
                                    guard->ours_revision);
                        }
                        return;
                      }
                      if (found.kvs(0).lease() != guard->lease_id) return;
                      worker_.post([this, key, revision = found.kvs(0).create_revision()] { remove(key, revision); });
                    });
}

void StrayEntries::remove(const std::string& key, std::int64_t create_revision) {
  {
    MutexLock lock(mu_);
    const auto found = guards_.find(key);
    if (found == guards_.end() || closed_) return;
    // The entry removed now is ours (on the guard's lease) at
    // `create_revision`. A close before this removal's answer (or, if it is
    // lost, before the retry) stops the guard and its note with it: known
    // to keys_and_ours(), the close notes the entry behind it after the
    // revoke, as for a release whose answer was lost.
    if (found->second.ours_revision == 0) found->second.ours_revision = create_revision;
  }
  const QueueDir queue{queue_dir_of_entry(key)};
  client_.txn_async(removal_txn(queue, {key, create_revision}), client_.command_deadline(), etcd::write_site::removal,
                    [this, queue, key, create_revision](pb::TxnResponse&& response, const Error* error) {
                      if (!error) {
                        if (response.succeeded()) {
                          log_(LogLevel::info, "removed a queue entry that nothing claims", {{"key", key}});
                        }
                        // Gone either way: by this removal, or by an earlier
                        // one of ours whose answer was lost (this retry's
                        // compare then fails), or by someone else.
                        const auto& first = response.responses(response.succeeded() ? 1 : 0).response_range();
                        post_note(queue, first, create_revision);
                        return;
                      }
                      if (error->value() == errc::closed) return;  // the client closes: so does the guard
                      const bool refused = error->value() != errc::unavailable;
                      if (refused) {
                        log_(LogLevel::error, "could not delete a queue entry that nothing claims; trying again",
                             {{"key", key}, {"error", error->what()}});
                      }
                      worker_.post_at(SteadyClock::now() + (refused ? kRefusedRetryPause : kRetryPause),
                                      [this, key, create_revision] { remove(key, create_revision); });
                    });
}

bool StrayEntries::lease_is_current(std::int64_t lease_id) const {
  const auto session = sessions_.latest();
  return session && session->lease_id() == lease_id && session->alive();
}

void StrayEntries::sweep() {
  // The leases of guards that this manager no longer keeps alive: asked of
  // etcd one by one, the answers handled on the worker.
  std::vector<std::int64_t> leases;
  {
    MutexLock lock(mu_);
    for (const auto& [key, guard] : guards_) {
      if (std::find(leases.begin(), leases.end(), guard.lease_id) == leases.end()) leases.push_back(guard.lease_id);
    }
  }
  std::erase_if(leases, [&](std::int64_t lease_id) { return lease_is_current(lease_id); });
  for (const auto lease_id : leases) {
    client_.lease_time_to_live_async(lease_id, client_.command_deadline(),
                                     [this, lease_id](pb::LeaseTimeToLiveResponse&& lease, const Error* error) {
                                       if (!error && lease.ttl() < 0)
                                         worker_.post([this, lease_id] { forget(lease_id); });
                                     });
  }
  bool again = false;
  {
    MutexLock lock(mu_);
    again = sweep_posted_ = !guards_.empty() && !closed_;
  }
  if (again) worker_.post_at(SteadyClock::now() + kSweepInterval, [this] { sweep(); });
}

void StrayEntries::forget(std::int64_t lease_id) {
  std::vector<std::int64_t> ended_watches;
  {
    MutexLock lock(mu_);
    for (auto guard = guards_.begin(); guard != guards_.end();) {
      if (guard->second.lease_id == lease_id) {
        if (guard->second.watch != 0) ended_watches.push_back(guard->second.watch);
        guard = guards_.erase(guard);
      } else {
        ++guard;
      }
    }
  }
  for (const auto watch : ended_watches) watches_.remove(watch);
}

void StrayEntries::close() {
  std::map<std::string, Guard> guards;
  {
    MutexLock lock(mu_);
    if (closed_) return;
    closed_ = true;
    guards.swap(guards_);
  }
  for (const auto& [key, guard] : guards) {
    if (guard.watch != 0) watches_.remove(guard.watch);
  }
}

}  // namespace etcdlock::detail
