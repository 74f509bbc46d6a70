// SessionSource: a manager's current session, and its replacement once it is
// lost. The manager keeps one lease for all of its locks; when that lease is
// lost, the next lock that needs one gets a new lease, without a restart.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <string>

#include "base/logger.h"
#include "base/mutex.h"
#include "etcd/client.h"
#include "session/session.h"
#include "session/session_events.h"

namespace etcdlock::detail {

// Thread-safe. No request to etcd is made while its mutex is held.
class SessionSource {
 public:
  // `closed_message` is the message of the Error(errc::closed) thrown after end().
  SessionSource(const etcd::Client& client, const Logger& log, std::chrono::seconds ttl, std::string closed_message,
                SessionCounters& counters, SessionEvents& events);

  // The live session, granting a new lease when the last one was lost. One
  // grant at a time; other callers wait for it. Throws Error: closed,
  // unavailable, permission_denied.
  std::shared_ptr<Session> current(SteadyTime deadline);
  // The session, live or not; null before the first grant and after end().
  std::shared_ptr<Session> latest() const;
  SessionState state() const;
  // Leases granted after the first one, because the one before was lost.
  std::uint64_t replacements() const;

  // Revokes the lease, which deletes every key on it, and refuses new
  // sessions. Says whether this call ended a session whose lease is now
  // known gone (lease_gone), and as of which revision. Idempotent; never
  // throws.
  Session::Ended end(SteadyTime deadline) noexcept;

 private:
  const etcd::Client& client_;
  const Logger& log_;
  const std::chrono::seconds ttl_;
  const std::string closed_message_;
  SessionCounters& counters_;
  SessionEvents& events_;

  mutable Mutex mu_;
  std::condition_variable_any granted_;
  std::shared_ptr<Session> session_ ETCDLOCK_GUARDED_BY(mu_);
  bool granting_ ETCDLOCK_GUARDED_BY(mu_) = false;  // a thread is granting a lease, not under mu_
  bool ended_ ETCDLOCK_GUARDED_BY(mu_) = false;
  std::uint64_t replacements_ ETCDLOCK_GUARDED_BY(mu_) = 0;
};

}  // namespace etcdlock::detail
