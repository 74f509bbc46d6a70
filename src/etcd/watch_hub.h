// WatchHub: many watchers multiplexed on one etcd Watch stream.
//
// Each watcher gets its own id, chosen here, so responses are routed without
// relying on the order of create requests. When the stream breaks (a member
// died, a leader was lost), the hub opens a new one and re-creates every
// watcher from the revision after the last event it delivered, so listeners
// see no gap. Only a compaction past that revision makes a gap, reported by
// on_gap().
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>

#include "etcd/client.h"
#include "logger.h"

namespace etcdlock::detail::etcd {

struct WatchEvent {
  bool deleted = false;  // a DELETE; otherwise a PUT
  std::string key;
  std::int64_t create_revision = 0;  // 0 for a DELETE
  std::int64_t mod_revision = 0;     // the revision of the change
};

// Called on the hub's thread, one call at a time per hub: keep calls short and
// never call back into the hub from them.
class WatchListener {
 public:
  virtual ~WatchListener() = default;
  // The watch is in place: every change from `start_revision` on will be
  // delivered. Called once.
  virtual void on_created(std::int64_t start_revision) = 0;
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

  enum class Events { all, deletes_only };

  // Watches [key, range_end) from `start_revision` (0: from now) and returns
  // the watcher's id. With deletes_only, etcd does not send PUT events at all.
  // Does not wait for etcd.
  std::int64_t add(std::string key, std::string range_end, std::int64_t start_revision,
                   std::shared_ptr<WatchListener> listener, Events events = Events::all);
  // Stops a watcher. A callback already under way may still complete.
  void remove(std::int64_t id);
  // Ends the stream and joins the hub's thread. Idempotent.
  void close();

  std::size_t size() const;

 private:
  struct Watcher {
    std::string key;
    std::string range_end;
    std::int64_t next_revision = 0;  // where a re-created watch starts; 0 until created
    Events events = Events::all;
    bool created = false;
    std::shared_ptr<WatchListener> listener;
  };

  void run();
  void dispatch(const pb::WatchResponse& response);
  void send_create(std::int64_t id, const Watcher& watcher);  // requires mu_
  void send_cancel(std::int64_t id);                           // requires mu_

  const Client& client_;
  const Logger& log_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::map<std::int64_t, Watcher> watchers_;  // guarded by mu_
  // Creates sent on the open stream and not yet answered, oldest first. etcd
  // answers creates in order, and answers a refused one with watch id -1.
  std::deque<std::int64_t> unanswered_creates_;  // guarded by mu_
  std::int64_t next_id_ = 1;                  // guarded by mu_
  grpc::ClientContext* context_ = nullptr;    // the open stream's, guarded by mu_
  WatchStream* stream_ = nullptr;             // guarded by mu_; writes hold mu_
  bool closed_ = false;                       // guarded by mu_
  std::thread thread_;
};

}  // namespace etcdlock::detail::etcd
