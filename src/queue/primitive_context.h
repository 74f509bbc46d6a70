// PrimitiveContext: what a manager shares with its locks, and all that a lock may
// use: the connection to etcd, the watch hub, the session, the hand-over
// inbox, the keys of entries nothing claims (stray_entries.h), the background
// worker, the notifier, and a stop token requested when the manager closes.
// Locks keep it alive, so a Lock may outlive its LockManager; after close,
// every service refuses new work.
//
// Dependencies run one way (folders by layer, see CMakeLists.txt): the
// manager owns the context and the recipes; a recipe uses the context and
// knows nothing of the manager; the services below the queue (the client,
// the session, the inbox) know nothing of queues. A hold learns of its end
// through stop tokens (the session's, the manager's), never by being called.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/logger.h"
#include "base/mutex.h"
#include "base/notifier.h"
#include "base/worker.h"
#include "etcd/client.h"
#include "etcd/watch_hub.h"
#include "etcdlock/options.h"
#include "keys/holder_value.h"
#include "queue/primitive_metrics.h"
#include "queue/stray_entries.h"
#include "session/inbox.h"
#include "session/session_counters.h"
#include "session/session_events.h"
#include "session/session_source.h"

namespace etcdlock::detail {

// Thread-safe.
class PrimitiveContext {
 public:
  // Connects nothing yet; `options` are validated.
  explicit PrimitiveContext(const ManagerOptions& options);
  // shut_down().
  ~PrimitiveContext();
  PrimitiveContext(const PrimitiveContext&) = delete;
  PrimitiveContext& operator=(const PrimitiveContext&) = delete;

  // Waits for a connection, grants the first lease and opens the inbox.
  // Throws Error: unavailable, permission_denied.
  void connect(SteadyTime deadline);

  const std::string& prefix() const { return prefix_; }
  const Logger& log() const { return log_; }
  const etcd::Client& client() const { return client_; }
  etcd::WatchHub& watches() { return watches_; }
  SessionSource& sessions() { return sessions_; }
  HandOverInbox& inbox() { return inbox_; }
  Worker& worker() { return worker_; }
  // The threads that run the steps of asynchronous acquisitions
  // (async_acquisition.h): one started at the first; another (up to
  // kStepThreads) when a step is due while every one is in a request.
  Worker& steps();
  static constexpr std::size_t kStepThreads = 4;
  // One thread for the deadlines of asynchronous acquisitions, whose tasks
  // never wait for etcd: a deadline is answered on time even while every
  // step thread is held by a request that etcd does not answer.
  Worker& step_deadlines();
  Notifier& notifier() { return notifier_; }
  StrayEntries& strays() { return strays_; }
  PrimitiveCounterRegistry& primitive_counters() { return lock_counters_; }
  SessionCounters& session_counters() { return session_counters_; }
  SessionEvents& session_events() { return session_events_; }

  // Requested when the manager closes.
  std::stop_token closed_token() const { return closed_.get_token(); }
  bool closed() const { return closed_.stop_requested(); }
  // Throws Error(errc::closed) once the manager is closed.
  void check_open() const;
  Error closed_error() const;

  // The value of a new queue entry: who this manager is, where to leave it a
  // hand-over note (unless `with_inbox` is false), and what the entry is.
  std::string entry_value(HolderValue::Side side = HolderValue::Side::none, std::int64_t limit = 0,
                          bool with_inbox = true) const;
  // The value of a multi-lock's entries, which name its set when its names
  // take kMaxSetNamesInValue bytes or fewer together.
  static constexpr std::size_t kMaxSetNamesInValue = 1024;
  std::string multi_entry_value(std::vector<std::string> names) const;

  // "-<n>" with an n this manager never gave before: the key suffix of an
  // entry that must not share its key with any other entry of this process
  // (a permit, a read-write lock's hold), whichever object makes it.
  std::string unique_key_suffix();

  // The manager is closing with an entry of ours created at `revision` in
  // the queue `dir`, held or waiting (perhaps first, unaware): once the lease
  // is revoked, the new head of the queue gets a note if it was behind our
  // entry (hand_over.h), as an unlock would have left it; with `revision` 0,
  // whatever its place. Ignored once the notes are under way.
  void hand_over_queue_on_close(std::string dir, std::int64_t revision) ETCDLOCK_EXCLUDES(close_notes_mu_);
  // As above for an entry whose create went out unanswered: whether it
  // exists, and at which revision, is read before the revoke, so that the
  // head gets a note only if it was behind it (a head that was ahead of it
  // holds already, and a note to it would only linger in its inbox).
  void hand_over_queue_on_close_unanswered(std::string dir, std::string key) ETCDLOCK_EXCLUDES(close_notes_mu_);

  // Ends everything: requests the closed token (holds end, waits wake),
  // revokes the lease, notes the successors of the locks held, stops the
  // threads, and waits for the loss signals under way. Idempotent: a second caller returns once the first is done,
  // unless it is a loss callback, which the first is waiting for.
  void shut_down() noexcept;

 private:
  // Before the revoke: the entries of unanswered creates registered for
  // close()'s notes, read while they still stand.
  void settle_unanswered_creates(SteadyTime deadline) noexcept ETCDLOCK_EXCLUDES(close_notes_mu_);
  void note_successors_after_revoke(const Session::Ended& ended, SteadyTime deadline) noexcept
      ETCDLOCK_EXCLUDES(close_notes_mu_);
  // `worker`, started (stopped at once on a closed manager) if not yet.
  Worker& lazy_worker(std::unique_ptr<Worker>& worker, std::string_view role, std::size_t max_threads)
      ETCDLOCK_REQUIRES(steps_mu_);

  const std::string prefix_;
  const std::string owner_;
  const std::string hostname_;
  const Logger log_;
  PrimitiveCounterRegistry lock_counters_;
  SessionCounters session_counters_;
  etcd::Client client_;
  etcd::WatchHub watches_;
  Notifier notifier_;
  SessionEvents session_events_;
  SessionSource sessions_;
  Worker worker_;
  Mutex steps_mu_;
  std::unique_ptr<Worker> steps_ ETCDLOCK_GUARDED_BY(steps_mu_);
  std::unique_ptr<Worker> step_deadlines_ ETCDLOCK_GUARDED_BY(steps_mu_);
  StrayEntries strays_;
  HandOverInbox inbox_;
  std::stop_source closed_;
  std::atomic<std::uint64_t> next_key_suffix_{1};

  Mutex close_notes_mu_;
  // Per queue, our earliest entry's create revision.
  std::map<std::string, std::int64_t> close_note_queues_ ETCDLOCK_GUARDED_BY(close_notes_mu_);
  // The queue and key of each create of ours that went unanswered.
  std::vector<std::pair<std::string, std::string>> close_unanswered_creates_ ETCDLOCK_GUARDED_BY(close_notes_mu_);
  bool close_notes_taken_ ETCDLOCK_GUARDED_BY(close_notes_mu_) = false;
  bool close_unanswered_taken_ ETCDLOCK_GUARDED_BY(close_notes_mu_) = false;

  Mutex shut_down_mu_;
  std::condition_variable_any shut_down_done_;
  bool shut_down_ ETCDLOCK_GUARDED_BY(shut_down_mu_) = false;
};

}  // namespace etcdlock::detail
