#include "session/session_source.h"
#include "base/mutex.h"

namespace etcdlock::detail {

SessionSource::SessionSource(const etcd::Client& client, const Logger& log, std::chrono::seconds ttl,
                             std::string closed_message, SessionCounters& counters, SessionEvents& events)
    : client_(client),
      log_(log),
      ttl_(ttl),
      closed_message_(std::move(closed_message)),
      counters_(counters),
      events_(events) {}

std::shared_ptr<Session> SessionSource::current(SteadyTime deadline) {
  MutexLock lock(mu_);
  for (;;) {
    if (ended_) throw Error(errc::closed, closed_message_);
    if (session_ && session_->alive()) return session_;
    if (!granting_) break;
    const bool in_time = deadline == SteadyTime::max()
                             ? (granted_.wait(lock), true)
                             : granted_.wait_until(lock, deadline) == std::cv_status::no_timeout;
    if (!in_time && granting_) {
      throw Error(errc::unavailable, "timed out waiting for a new lease; endpoints " + client_.endpoints());
    }
  }
  granting_ = true;
  lock.unlock();
  std::shared_ptr<Session> fresh;
  try {
    fresh = std::make_shared<Session>(
        client_, log_, ttl_, deadline, [&events = events_](SessionEvent event) { events.publish(std::move(event)); },
        &counters_);
  } catch (...) {
    lock.lock();
    granting_ = false;
    granted_.notify_all();
    throw;
  }
  lock.lock();
  granting_ = false;
  granted_.notify_all();
  if (ended_) {
    lock.unlock();
    fresh->end(client_.command_deadline());
    throw Error(errc::closed, closed_message_);
  }
  std::shared_ptr<Session> previous = std::exchange(session_, fresh);
  if (previous) ++replacements_;
  lock.unlock();
  if (previous)
    log_(LogLevel::warning, "lease replaced", {{"old_lease", previous->lease_hex()}, {"lease", fresh->lease_hex()}});
  events_.publish({SessionState::healthy, fresh->lease_id(), fresh->time_left(), previous != nullptr, ""});
  return fresh;
}

std::shared_ptr<Session> SessionSource::latest() const {
  MutexLock lock(mu_);
  return session_;
}

SessionState SessionSource::state() const {
  std::shared_ptr<Session> session;
  {
    MutexLock lock(mu_);
    if (ended_) return SessionState::closed;
    session = session_;
  }
  return session ? session->state() : SessionState::lost;
}

std::uint64_t SessionSource::replacements() const {
  MutexLock lock(mu_);
  return replacements_;
}

Session::Ended SessionSource::end(SteadyTime deadline) noexcept {
  std::shared_ptr<Session> session;
  {
    MutexLock lock(mu_);
    if (ended_) return {};
    ended_ = true;
    session = std::move(session_);
  }
  granted_.notify_all();
  if (!session) return {};
  return session->end(deadline);
}

}  // namespace etcdlock::detail
