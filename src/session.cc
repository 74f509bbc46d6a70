#include "session.h"

#include <algorithm>
#include "key_space.h"

namespace etcdlock::detail {
namespace {

using std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;

}  // namespace

std::chrono::milliseconds safety_margin(std::chrono::seconds ttl) {
  // A fifth of the TTL covers clock-rate differences and this process's
  // scheduling delays; the clamp keeps it useful for short and long TTLs.
  return std::clamp<milliseconds>(std::chrono::duration_cast<milliseconds>(ttl) / 5, milliseconds(250),
                                  milliseconds(5000));
}

std::string_view to_string(SessionState state) noexcept {
  switch (state) {
    case SessionState::healthy: return "healthy";
    case SessionState::suspect: return "suspect";
    case SessionState::lost: return "lost";
    case SessionState::closed: return "closed";
  }
  return "unknown";
}

Session::Session(const etcd::Client& client, const Logger& log, std::chrono::seconds ttl, etcd::SteadyTime deadline,
                 LostHandler on_lost)
    : client_(client), log_(log), on_lost_(std::move(on_lost)) {
  const auto sent = Steady::now();
  const auto granted = client_.lease_grant(ttl.count(), deadline);
  lease_id_ = granted.id();
  granted_ttl_ = std::chrono::seconds(granted.ttl());
  local_deadline_ = sent + granted_ttl_ - safety_margin(granted_ttl_);
  log_(LogLevel::info, "lease granted", {{"lease", lease_hex()}, {"ttl_s", std::to_string(granted_ttl_.count())}});
  reader_ = std::thread([this] { read_responses(); });
  keeper_ = std::thread([this] { keep_alive(); });
}

Session::~Session() { stop_threads(); }

std::string Session::lease_hex() const { return detail::lease_hex(lease_id_); }

SessionState Session::state() const {
  std::lock_guard lock(mu_);
  return state_;
}

std::chrono::milliseconds Session::renew_interval() const {
  return std::max<milliseconds>(std::chrono::duration_cast<milliseconds>(granted_ttl_) / 3, milliseconds(100));
}

void Session::keep_alive() {
  auto next_send = Steady::now() + renew_interval();
  std::unique_lock lock(mu_);
  while (!stopping_) {
    wake_.wait_until(lock, std::min(next_send, local_deadline_), [&] {
      return stopping_ || send_now_ || Steady::now() >= std::min(next_send, local_deadline_);
    });
    if (stopping_) return;
    const auto now = Steady::now();
    if (now >= local_deadline_) {
      lock.unlock();
      declare_lost("no renewal was acknowledged before the local deadline");
      return;
    }
    // An acknowledgement overdue by a third of the TTL: the member may be
    // frozen. Say so, renew faster, and move the stream, which lets gRPC
    // reconnect to another member.
    const bool overdue = !unacknowledged_.empty() && now - unacknowledged_.front() > renew_interval();
    if (overdue && state_ == SessionState::healthy) {
      state_ = SessionState::suspect;
      log_(LogLevel::warning, "lease renewals are failing",
           {{"lease", lease_hex()},
            {"deadline_in_ms", std::to_string(std::chrono::duration_cast<milliseconds>(local_deadline_ - now).count())}});
      if (context_ != nullptr) context_->TryCancel();
    }
    if (send_now_ || now >= next_send) {
      send_now_ = false;
      if (stream_ != nullptr) {
        etcdserverpb::LeaseKeepAliveRequest request;
        request.set_id(lease_id_);
        if (stream_->Write(request)) unacknowledged_.push_back(now);
      }
      const auto interval = state_ == SessionState::healthy ? renew_interval() : renew_interval() / 3;
      next_send = now + std::max<milliseconds>(std::chrono::duration_cast<milliseconds>(interval), milliseconds(100));
    }
  }
}

void Session::read_responses() {
  for (;;) {
    auto context = std::make_unique<grpc::ClientContext>();
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      context_ = context.get();
    }
    std::unique_ptr<etcd::KeepAliveStream> stream;
    try {
      stream = client_.open_keep_alive(*context);
    } catch (const Error& error) {  // authentication failed; the deadline decides
      log_(LogLevel::warning, "cannot open the keepalive stream", {{"lease", lease_hex()}, {"error", error.what()}});
      std::unique_lock lock(mu_);
      context_ = nullptr;
      wake_.wait_for(lock, milliseconds(500), [&] { return stopping_; });
      if (stopping_) return;
      continue;
    }
    {
      std::lock_guard lock(mu_);
      stream_ = stream.get();
      unacknowledged_.clear();  // renewals sent on the old stream will never be answered
      send_now_ = true;
    }
    wake_.notify_all();
    etcdserverpb::LeaseKeepAliveResponse response;
    bool lease_gone = false;
    while (stream->Read(&response)) {
      if (response.ttl() <= 0) {
        lease_gone = true;
        break;
      }
      std::lock_guard lock(mu_);
      if (unacknowledged_.empty()) continue;
      const auto sent = unacknowledged_.front();
      unacknowledged_.pop_front();
      const auto ttl = std::chrono::seconds(response.ttl());
      local_deadline_ = std::max(local_deadline_, sent + ttl - safety_margin(ttl));
      if (state_ == SessionState::suspect) {
        state_ = SessionState::healthy;
        log_(LogLevel::info, "lease renewals recovered", {{"lease", lease_hex()}});
      }
    }
    {
      std::lock_guard lock(mu_);
      stream_ = nullptr;
    }
    if (lease_gone) context->TryCancel();
    client_.stream_ended(stream->Finish());
    {
      std::lock_guard lock(mu_);
      context_ = nullptr;
      if (stopping_) return;
    }
    if (lease_gone) {
      declare_lost("etcd reports the lease expired or revoked");
      return;
    }
    std::unique_lock lock(mu_);
    wake_.wait_for(lock, milliseconds(50), [&] { return stopping_; });
  }
}

void Session::declare_lost(const std::string& reason) {
  {
    std::lock_guard lock(mu_);
    if (state_ == SessionState::lost || state_ == SessionState::closed) return;
    state_ = SessionState::lost;
    stopping_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  wake_.notify_all();
  log_(LogLevel::warning, "lease lost", {{"lease", lease_hex()}, {"reason", reason}});
  lost_.request_stop();
  // A copy: the handler may drop the last reference to this session.
  if (auto handler = on_lost_) handler(*this, reason);
}

void Session::stop_threads() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  wake_.notify_all();
  for (auto* thread : {&keeper_, &reader_}) {
    if (!thread->joinable()) continue;
    // The lost handler may drop the last reference on a session thread.
    if (thread->get_id() == std::this_thread::get_id()) {
      thread->detach();
    } else {
      thread->join();
    }
  }
}

void Session::end(etcd::SteadyTime deadline) noexcept {
  stop_threads();
  {
    std::lock_guard lock(mu_);
    if (state_ != SessionState::lost) state_ = SessionState::closed;
  }
  try {
    if (!lost_.stop_requested()) client_.lease_revoke(lease_id_, deadline);
  } catch (const std::exception& e) {
    log_(LogLevel::warning, "lease revoke failed; its keys go when its TTL passes",
         {{"lease", lease_hex()}, {"error", e.what()}});
  }
  lost_.request_stop();
}

}  // namespace etcdlock::detail
