// WatchHub: many watchers multiplexed on one etcd Watch stream.
//
// A watcher is known to its owner by a handle that never changes, and to etcd
// by a wire id that the hub picks anew for every create request: etcd keeps
// the id of a watch it cancelled for compaction registered on the stream, and
// refuses a second create with it. When the stream breaks (a member died or
// hangs, a leader was lost), the hub opens a new one and re-creates every
// watcher from the revision after the last one it delivered, so listeners see
// no gap. Only a compaction past that revision makes a gap, reported by
// on_gap(); the watcher goes on from the compacted revision.
//
// A watcher whose events may wait (Urgency::on_demand: the hand-over inbox,
// idle most of the time) is read only while a demand() is held for it; until
// then its events wait in the connection, in order, and nothing is lost. So
// while nothing else is watched, no thread of the hub waits in gRPC: with
// gRPC's epoll1 engine every thread waiting in gRPC takes turns at polling
// the connections, and a reader parked in Read() would be woken for every
// unary reply of the process to pass it on (half the context switches of an
// uncontended lock cycle, a sixth to a third of its client CPU). A stream
// that breaks meanwhile is noticed when reading resumes (or a write to it
// fails), and reopened then; an on-demand watcher is then made again from
// now, not from where it was, and its listener hears of a gap (on_gap()).
//
// An idle watcher's resume revision advances with etcd's per-watcher progress
// notifications, which etcd sends only while the watcher is in sync. The
// answer to etcd 3.4's stream-wide progress request does not advance it:
// that answer is sent without checking that every watcher has caught up, so
// resuming from it could skip events. The hub sends that request only to
// get a response that ends a Read() (see end_demand() and drain()).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <thread>

#include "base/logger.h"
#include "base/mutex.h"
#include "etcd/client.h"

namespace etcdlock::detail::etcd {

struct WatchEvent {
  bool deleted = false;  // a DELETE; otherwise a PUT
  std::string key;
  std::string value;                 // empty for a DELETE
  std::int64_t create_revision = 0;  // 0 for a DELETE
  std::int64_t mod_revision = 0;     // the revision of the change
  std::int64_t lease = 0;            // 0 for a DELETE
};

// Called on the hub's thread, one call at a time per hub. Calls must be short
// and must not block on the network: every other watcher waits meanwhile.
// They may add and remove watchers.
class WatchListener {
 public:
  virtual ~WatchListener() = default;
  // The watch is in place: every change from `start_revision` on will be
  // delivered. Called once.
  virtual void on_created(std::int64_t /*start_revision*/) {}
  // Changes, in revision order.
  virtual void on_events(std::span<const WatchEvent> events) = 0;
  // Changes may have been missed: read the state again. Delivery goes on.
  virtual void on_gap() = 0;
  // etcd refused the watch (permission denied): nothing more will come. The
  // watcher is removed.
  virtual void on_failed(const std::string& reason) = 0;
};

// Thread-safe.
class WatchHub {
 public:
  WatchHub(const Client& client, const Logger& log);
  ~WatchHub();
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  enum class Events { all, deletes_only, puts_only };
  enum class Urgency {
    prompt,     // delivered as soon as etcd sends it
    on_demand,  // delivered while a demand() is held (or the stream is read for another watcher)
  };

  // Watches [key, range_end) from `start_revision` (0: from now) and returns
  // the watcher's handle. Does not wait for etcd. Its creation is read at
  // once, whatever its delivery.
  std::int64_t add(std::string key, std::string range_end, std::int64_t start_revision,
                   std::shared_ptr<WatchListener> listener, Events events = Events::all,
                   Urgency urgency = Urgency::prompt);
  // Stops a watcher. A callback already under way may still complete.
  void remove(std::int64_t handle);
  // Someone waits for an on-demand watcher's events: read them at once
  // until the matching end_demand(). Counted; never blocks on etcd.
  void demand();
  void end_demand();
  // Reads, once, what etcd has sent on the stream so far, for every watcher
  // (an on-demand watcher's events that nobody demanded). Never blocks on etcd.
  void drain();
  // Ends the stream and joins the hub's thread. Idempotent.
  void close();

  std::size_t size() const;
  // Watch streams opened so far, for observers of reconnects.
  std::uint64_t streams_opened() const;
  // The hub's thread waits in the stream for a response (for tests).
  bool reading() const;

 private:
  struct Watcher {
    std::string key;
    std::string range_end;
    std::int64_t next_revision = 0;  // where a re-created watch starts; 0 until created
    Events events = Events::all;
    std::int64_t wire_id = 0;  // the id of its current create request; 0 when none
    bool created = false;
    Urgency urgency = Urgency::prompt;
    bool gap_when_created = false;  // made again from now: its listener hears of a gap once it is
    std::shared_ptr<WatchListener> listener;
  };
  struct Delivery;

  void run();
  // Reads one stream until it ends.
  void serve(WatchStream& stream);
  Delivery route(const pb::WatchResponse& response) ETCDLOCK_REQUIRES(mu_);
  void send_create(std::int64_t handle, Watcher& watcher) ETCDLOCK_REQUIRES(mu_);
  void send_cancel(std::int64_t wire_id) ETCDLOCK_REQUIRES(mu_);
  // Something must be read now: a prompt watcher, a demand, a create not
  // yet answered, a drain under way, or a failed write to notice.
  bool must_read() const ETCDLOCK_REQUIRES(mu_);
  // Gets the thread out of a Read() that nothing needs any more.
  void stop_reading_soon() ETCDLOCK_REQUIRES(mu_);
  // etcd answers it on the stream, after what it sent before (a response
  // with watch id -1): a reader waiting for it reads all that came first.
  void send_progress_request() ETCDLOCK_REQUIRES(mu_);
  // Takes a watcher out of the map and the counts.
  void erase(std::map<std::int64_t, Watcher>::iterator watcher) ETCDLOCK_REQUIRES(mu_);

  const Client& client_;
  const Logger& log_;

  mutable Mutex mu_;
  std::condition_variable_any wake_;
  std::map<std::int64_t, Watcher> watchers_ ETCDLOCK_GUARDED_BY(mu_);      // by handle
  std::map<std::int64_t, std::int64_t> by_wire_ ETCDLOCK_GUARDED_BY(mu_);  // wire id -> handle
  // Creates sent on the open stream and not yet answered, oldest first. etcd
  // answers creates in order, and answers a refused one with watch id -1.
  std::deque<std::int64_t> unanswered_creates_ ETCDLOCK_GUARDED_BY(mu_);  // wire ids
  std::int64_t next_handle_ ETCDLOCK_GUARDED_BY(mu_) = 1;
  std::int64_t next_wire_id_ ETCDLOCK_GUARDED_BY(mu_) = 1;
  std::uint64_t streams_opened_ ETCDLOCK_GUARDED_BY(mu_) = 0;
  std::size_t prompt_watchers_ ETCDLOCK_GUARDED_BY(mu_) = 0;
  std::size_t demands_ ETCDLOCK_GUARDED_BY(mu_) = 0;
  bool reading_ ETCDLOCK_GUARDED_BY(mu_) = false;  // the thread is in Read()
  bool nudged_ ETCDLOCK_GUARDED_BY(mu_) = false;   // a progress request went out to end that Read()
  // Progress requests on the open stream: sent, answered, and the one a
  // drain() reads up to.
  std::uint64_t progress_sent_ ETCDLOCK_GUARDED_BY(mu_) = 0;
  std::uint64_t progress_answered_ ETCDLOCK_GUARDED_BY(mu_) = 0;
  std::uint64_t drained_up_to_ ETCDLOCK_GUARDED_BY(mu_) = 0;
  // A write on the open stream failed: it is broken, and the reader must
  // find out (a stream that nobody reads is never found broken otherwise).
  bool write_failed_ ETCDLOCK_GUARDED_BY(mu_) = false;
  grpc::ClientContext* context_ ETCDLOCK_GUARDED_BY(mu_) = nullptr;  // the open stream's
  WatchStream* stream_ ETCDLOCK_GUARDED_BY(mu_) = nullptr;           // writes hold mu_
  bool closed_ ETCDLOCK_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace etcdlock::detail::etcd
