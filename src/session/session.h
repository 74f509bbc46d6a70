// Session: one etcd lease, kept alive in the background, with a local
// deadline that ends it before etcd can.
//
// Each renewal is a keepalive stream of its own: one request, one answer,
// closed. A stream kept open would need a thread blocked in its Read(), and
// with gRPC's synchronous API such a thread polls the channel's connection,
// which every unary reply shares: it woke for each reply of the process and
// passed it on (two context switches per cycle of an uncontended lock,
// measured). A renewal every third of the TTL costs one stream opening.
//
// Two threads: the keeper watches the local deadline and says when a renewal
// is due; the renewer makes it. The renewer may block (a token to fetch
// under the client's token mutex, a member that hangs), the keeper never
// does, so the loss is declared on time whatever a renewal does.
//
// The local deadline is the send time of the last acknowledged renewal plus
// the TTL etcd granted, minus a safety margin, measured on BootClock. etcd
// cannot expire the lease before that send time plus the TTL, so a session
// declares itself lost, and its holds end, before anyone else can be given
// their locks.
//
// A renewal unanswered for too long makes the session suspect: it tells the
// client to abandon the member (which may hang rather than fail) and renews
// on the next one, faster, until an answer comes or the deadline passes.
//
// A session lost at its local deadline does not revoke its lease, even when
// etcd can be reached again: the lease's remaining life in etcd (at least the
// loss margin) is the time its holds' owners were promised for stopping what
// they do. Each hold removes its own entry once given up, and end() (the
// manager's close(), which ends every hold first) revokes it all the same.
//
// The session knows nothing of locks. It tells the world it is lost through
// lost_token(), as etcd's Go Session does through Done().
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <thread>

#include "base/boot_alarm.h"
#include "base/clock.h"
#include "base/logger.h"
#include "base/mutex.h"
#include "etcd/client.h"
#include "etcdlock/session_state.h"
#include "session/session_counters.h"

namespace etcdlock::detail {

// Thread-safe.
class Session {
 public:
  // Grants a lease of `ttl` (throws Error: unavailable, permission_denied) and
  // starts keeping it alive.
  // Tells `on_event` (may be empty) of each change of state, from any of its
  // threads: it must not block. `counters` (may be null) count renewals'
  // round trips and failures.
  using EventSink = std::function<void(SessionEvent event)>;
  Session(const etcd::Client& client, const Logger& log, std::chrono::seconds ttl, SteadyTime deadline,
          EventSink on_event = {}, SessionCounters* counters = nullptr);
  // Stops keeping the lease alive; does not revoke it.
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  std::int64_t lease_id() const { return lease_id_; }
  std::string lease_hex() const;
  std::chrono::seconds granted_ttl() const { return granted_ttl_; }

  // Requested once the session is lost or ended. Callbacks registered on it
  // run on the thread that ends the session: keep them short.
  std::stop_token lost_token() const { return lost_.get_token(); }
  bool alive() const { return !lost_.stop_requested(); }
  SessionState state() const;
  // How long until the local deadline; zero once it has passed.
  std::chrono::milliseconds time_left() const;

  // etcd said the lease is gone before the keepalive stream did: end the
  // session as lost now.
  void invalidate(const std::string& reason) { declare_lost(reason); }

  // What end() came to.
  struct Ended {
    // The lease is known gone: revoked, or expired before.
    bool lease_gone = false;
    // etcd's revision once the revoke applied, when its reply told it: the
    // keys of the lease went in it, and every key created later was created
    // after they were gone. 0: not known (the lease expired, or the reply of
    // the revoke that deleted it was lost and a second one found none).
    std::int64_t revoke_revision = 0;
  };
  // Revokes the lease, which deletes its keys in etcd, and ends the session.
  // Never throws; failures are logged.
  Ended end(SteadyTime deadline) noexcept;

 private:
  // end()'s revoke, sent again after a failure that left the lease alive
  // while `deadline` allows.
  Ended revoke_until(SteadyTime deadline) noexcept;
  // What one renewal came to.
  struct Renewal {
    enum class Outcome {
      renewed,     // etcd answered with the TTL below
      lease_gone,  // etcd answered that the lease expired or was revoked
      unanswered,  // no answer within the renewal's timeout: the member may hang
      failed,      // the stream failed at once, or the session is stopping
    };
    Outcome outcome = Outcome::failed;
    std::chrono::seconds ttl{0};
    // failed: how long until the next try. A refused authentication waits
    // longer: each try costs etcd a password hash.
    std::chrono::milliseconds retry_after{100};
  };

  void keep_alive();  // the keeper: watches the local deadline, says when a renewal is due
  void renew();       // the renewer: makes each renewal that is due
  // Sends one renewal on a stream of its own and waits up to `timeout` for
  // its answer. Called without mu_; the stream's context is in context_
  // meanwhile, so that declare_lost() and stop_threads() can cancel it.
  Renewal renew_once(std::chrono::milliseconds timeout);
  // Takes in a renewal sent at `sent`: the local deadline, the state, and
  // when the next renewal goes.
  void take_in(const Renewal& renewal, BootTime sent) ETCDLOCK_REQUIRES(mu_);
  void declare_lost(const std::string& reason);
  void stop_threads();
  std::chrono::milliseconds renew_interval() const;
  std::chrono::milliseconds answer_timeout() const;

  const etcd::Client& client_;
  const Logger& log_;
  const EventSink on_event_;
  SessionCounters* const counters_;
  std::int64_t lease_id_ = 0;
  std::chrono::seconds granted_ttl_{0};
  std::stop_source lost_;

  // What the keeper waits on; the renewer waits on wake_.
  BootAlarm keeper_alarm_;
  mutable Mutex mu_;
  std::condition_variable_any wake_;
  SessionState state_ ETCDLOCK_GUARDED_BY(mu_) = SessionState::healthy;
  BootTime local_deadline_ ETCDLOCK_GUARDED_BY(mu_);
  BootTime last_answered_send_ ETCDLOCK_GUARDED_BY(mu_);
  BootTime next_send_ ETCDLOCK_GUARDED_BY(mu_);
  bool renewal_due_ ETCDLOCK_GUARDED_BY(mu_) = false;                // the keeper asks the renewer
  bool renewing_ ETCDLOCK_GUARDED_BY(mu_) = false;                   // a renewal is under way
  grpc::ClientContext* context_ ETCDLOCK_GUARDED_BY(mu_) = nullptr;  // of the renewal under way
  bool stopping_ ETCDLOCK_GUARDED_BY(mu_) = false;
  std::thread keeper_;
  std::thread renewer_;
};

}  // namespace etcdlock::detail
