#include "session/session.h"

#include <algorithm>

#include "base/mutex.h"
#include "base/text.h"
#include "base/thread_name.h"

namespace etcdlock {

std::chrono::milliseconds loss_margin(std::chrono::seconds ttl) {
  // A fifth of the TTL covers clock-rate differences and this process's
  // scheduling delays; the clamp keeps it useful for short and long TTLs.
  return std::clamp<std::chrono::milliseconds>(std::chrono::duration_cast<std::chrono::milliseconds>(ttl) / 5,
                                               std::chrono::milliseconds(250), std::chrono::milliseconds(5000));
}

}  // namespace etcdlock

namespace etcdlock::detail {
namespace {

using std::chrono::milliseconds;

milliseconds to_ms(BootClock::duration duration) { return std::chrono::duration_cast<milliseconds>(duration); }

}  // namespace

Session::Session(const etcd::Client& client, const Logger& log, std::chrono::seconds ttl, SteadyTime deadline,
                 EventSink on_event, SessionCounters* counters)
    : client_(client), log_(log), on_event_(std::move(on_event)), counters_(counters) {
  // Counted from when the grant went out, not from before the token it may
  // have had to fetch first: an authentication that takes about a TTL (a high
  // bcrypt cost on a loaded etcd) made every new lease lost at its grant.
  BootTime sent = BootClock::now();
  const auto granted = client_.lease_grant(ttl.count(), deadline, &sent);
  lease_id_ = granted.id();
  granted_ttl_ = std::chrono::seconds(granted.ttl());
  last_answered_send_ = sent;
  local_deadline_ = sent + granted_ttl_ - loss_margin(granted_ttl_);
  next_send_ = sent + renew_interval();
  log_(LogLevel::info, "lease granted", {{"lease", lease_hex()}, {"ttl_s", std::to_string(granted_ttl_.count())}});
  keeper_ = std::thread([this] {
    name_this_thread("lease");
    keep_alive();
  });
  renewer_ = std::thread([this] {
    name_this_thread("renew");
    renew();
  });
}

Session::~Session() { stop_threads(); }

std::string Session::lease_hex() const { return hex_id(lease_id_); }

SessionState Session::state() const {
  MutexLock lock(mu_);
  return state_;
}

std::chrono::milliseconds Session::time_left() const {
  MutexLock lock(mu_);
  return std::max(milliseconds(0), to_ms(local_deadline_ - BootClock::now()));
}

std::chrono::milliseconds Session::renew_interval() const {
  return std::max<milliseconds>(std::chrono::duration_cast<milliseconds>(granted_ttl_) / 3, milliseconds(100));
}

std::chrono::milliseconds Session::answer_timeout() const {
  // etcd answers a renewal in milliseconds; a member that takes this long is
  // dead or hung, and there must be time left to try another before the
  // local deadline.
  return std::clamp<milliseconds>(renew_interval() / 2, milliseconds(200), milliseconds(2000));
}

void Session::keep_alive() {
  MutexLock lock(mu_);
  while (!stopping_) {
    const auto now = BootClock::now();
    if (now >= local_deadline_) {
      lock.unlock();
      // The lease is not revoked here, though etcd may be reachable again:
      // it lives on in etcd for at least the loss margin, and that margin is
      // what the holds' owners were promised for stopping their work (a
      // child process, a write under way). A revoke now would let the next
      // holder in before they could stop; it could even reach etcd before
      // the notifier thread has told them. Each hold, once given up, removes
      // its own entry (Hold::give_up), which lets its successor in as early
      // as is safe; what is never given up goes when the lease expires.
      declare_lost("no renewal was answered before the local deadline");
      return;
    }
    const bool busy = renewal_due_ || renewing_;
    if (!busy && now >= next_send_) {
      renewal_due_ = true;
      wake_.notify_all();
      continue;
    }
    const auto until = busy ? local_deadline_ : std::min(next_send_, local_deadline_);
    // On the boot clock, not in slices of a condition variable's wait: the
    // deadline passes during a suspend too, and an idle session wakes only
    // when a renewal is due.
    lock.unlock();
    keeper_alarm_.wait_until(until);
    lock.lock();
  }
}

void Session::renew() {
  MutexLock lock(mu_);
  for (;;) {
    wake_.wait(lock, [&]() ETCDLOCK_REQUIRES(mu_) { return stopping_ || renewal_due_; });
    if (stopping_) return;
    renewal_due_ = false;
    renewing_ = true;
    const auto sent = BootClock::now();
    // The wait for an answer ends by the local deadline, so that a renewal
    // answered after it cannot extend a session already declared lost.
    const auto timeout = std::clamp(to_ms(local_deadline_ - sent), milliseconds(1), answer_timeout());
    lock.unlock();
    const auto renewal = renew_once(timeout);
    lock.lock();
    renewing_ = false;
    if (stopping_) return;
    if (renewal.outcome == Renewal::Outcome::lease_gone) {
      lock.unlock();
      declare_lost("etcd reports the lease expired or revoked");
      return;
    }
    take_in(renewal, sent);
    keeper_alarm_.wake();  // the keeper's next wait depends on it
  }
}

Session::Renewal Session::renew_once(milliseconds timeout) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  const auto auth_deadline = SteadyClock::now() + timeout;
  {
    MutexLock lock(mu_);
    if (stopping_) return {};
    context_ = &context;
  }
  Renewal renewal;
  try {
    const auto stream = client_.open_keep_alive(context, auth_deadline);
    etcdserverpb::LeaseKeepAliveRequest request;
    request.set_id(lease_id_);
    etcdserverpb::LeaseKeepAliveResponse response;
    // The request also closes the stream for writing: etcd ends the stream
    // once it has answered, so Finish() does not wait for the deadline.
    if (stream->Write(request, grpc::WriteOptions().set_last_message()) && stream->Read(&response)) {
      renewal.outcome = response.ttl() > 0 ? Renewal::Outcome::renewed : Renewal::Outcome::lease_gone;
      renewal.ttl = std::chrono::seconds(response.ttl());
    }
    const auto status = stream->Finish();
    const bool stopping = [&] {
      MutexLock lock(mu_);
      return stopping_;
    }();
    if (renewal.outcome == Renewal::Outcome::failed && !stopping) {
      if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) renewal.outcome = Renewal::Outcome::unanswered;
      // The member may hang, or have lost its leader (the stream asks for
      // one): renew through another one.
      client_.abandon_member_of(context, "lease renewal failed: " + status.error_message());
    }
    client_.stream_ended(context, status);
  } catch (const Error& error) {  // authentication failed; the deadline decides
    log_(LogLevel::warning, "cannot open a keepalive stream", {{"lease", lease_hex()}, {"error", error.what()}});
    renewal.retry_after = milliseconds(500);
  }
  MutexLock lock(mu_);
  context_ = nullptr;
  return renewal;
}

void Session::take_in(const Renewal& renewal, BootTime sent) {
  const auto now = BootClock::now();
  if (renewal.outcome == Renewal::Outcome::renewed) {
    if (counters_) counters_->keepalive_rtt.observe(now - sent);
    last_answered_send_ = std::max(last_answered_send_, sent);
    local_deadline_ = std::max(local_deadline_, sent + renewal.ttl - loss_margin(renewal.ttl));
    next_send_ = sent + renew_interval();
    if (state_ == SessionState::suspect) {
      state_ = SessionState::healthy;
      log_(LogLevel::info, "lease renewals recovered", {{"lease", lease_hex()}});
      if (on_event_) on_event_({SessionState::healthy, lease_id_, to_ms(local_deadline_ - now), false, ""});
    }
    return;
  }
  if (counters_) ++counters_->renewals_failed;
  // A renewal that went unanswered waited its whole timeout: the next goes
  // at once, to another member. One that failed at once waits a little, so
  // that a member without a leader is not asked in a busy loop.
  next_send_ = renewal.outcome == Renewal::Outcome::unanswered ? now : now + renewal.retry_after;
  const bool overdue = renewal.outcome == Renewal::Outcome::unanswered ||
                       now - last_answered_send_ > renew_interval() + answer_timeout();
  if (overdue && state_ == SessionState::healthy) {
    state_ = SessionState::suspect;
    const auto time_left = to_ms(local_deadline_ - now);
    log_(LogLevel::warning, "lease renewals are failing",
         {{"lease", lease_hex()}, {"deadline_in_ms", std::to_string(time_left.count())}});
    if (on_event_) on_event_({SessionState::suspect, lease_id_, time_left, false, "lease renewals unanswered"});
  }
}

void Session::declare_lost(const std::string& reason) {
  {
    MutexLock lock(mu_);
    if (state_ == SessionState::lost || state_ == SessionState::closed) return;
    state_ = SessionState::lost;
    stopping_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  wake_.notify_all();
  keeper_alarm_.wake();
  log_(LogLevel::warning, "lease lost", {{"lease", lease_hex()}, {"reason", reason}});
  if (on_event_) on_event_({SessionState::lost, lease_id_, std::chrono::milliseconds(0), false, reason});
  lost_.request_stop();
}

void Session::stop_threads() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  wake_.notify_all();
  keeper_alarm_.wake();
  for (auto* thread : {&keeper_, &renewer_}) {
    if (!thread->joinable()) continue;
    // The last reference to a session may go on one of its own threads.
    if (thread->get_id() == std::this_thread::get_id()) {
      thread->detach();
    } else {
      thread->join();
    }
  }
}

Session::Ended Session::end(SteadyTime deadline) noexcept {
  stop_threads();
  bool was_lost = false;
  {
    MutexLock lock(mu_);
    was_lost = state_ == SessionState::lost;
    if (!was_lost) state_ = SessionState::closed;
  }
  if (on_event_) on_event_({SessionState::closed, lease_id_, std::chrono::milliseconds(0), false, ""});
  // A lost lease too: the loss left it to expire so that holders had their
  // margin to stop, and close() ends every hold. Without the revoke, a lost
  // hold's entry would block the next holder until the lease expires.
  const auto ended = revoke_until(deadline);
  lost_.request_stop();
  return ended;
}

Session::Ended Session::revoke_until(SteadyTime deadline) noexcept {
  // A revoke that fails at once (its connection died under it: "Socket
  // closed") goes again while the deadline allows; each entry of the lease
  // would otherwise wait out the TTL. A revoke is idempotent, and one whose
  // reply was lost after it landed is answered "not found" the next time.
  constexpr std::chrono::milliseconds kLongestPause{500};
  std::chrono::milliseconds pause{50};
  for (;;) {
    try {
      // Not found: expired already, and its keys with it, or revoked by an
      // earlier try whose reply was lost.
      return {true, client_.lease_revoke(lease_id_, deadline).value_or(0)};
    } catch (const etcd::LeaseNotFound&) {
      return {true, 0};
    } catch (const Error& e) {
      if (e.value() != errc::unavailable || SteadyClock::now() + pause >= deadline) {
        log_(LogLevel::warning, "lease revoke failed; its keys go when its TTL passes",
             {{"lease", lease_hex()}, {"error", e.what()}});
        return {};
      }
      log_(LogLevel::info, "lease revoke failed; trying again", {{"lease", lease_hex()}, {"error", e.what()}});
    } catch (const std::exception& e) {
      log_(LogLevel::warning, "lease revoke failed; its keys go when its TTL passes",
           {{"lease", lease_hex()}, {"error", e.what()}});
      return {};
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(2 * pause, kLongestPause);
  }
}

}  // namespace etcdlock::detail
