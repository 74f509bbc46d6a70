// The etcd client's asynchronous unary calls, on gRPC's callback API: no
// thread waits for the reply; gRPC calls back when it comes.
#include <memory>

#include "etcd/client.h"
#include "etcd/grpc_support.h"
#include "etcd/lost_replies.h"

namespace etcdlock::detail::etcd {

// One call in flight: what gRPC needs alive until it calls back.
template <class Request, class Response>
struct Client::AsyncCall {
  std::uint64_t id = 0;   // its entry in async_calls_; 0 until registered
  std::string_view call;  // "Range", "Txn": static strings
  std::string_view write_site;
  Request request;
  SteadyTime deadline;
  Done<Response> done;
  int attempt = 0;
  std::size_t member = 0;
  SteadyTime started;
  SteadyTime until;
  std::unique_ptr<grpc::ClientContext> context;
  std::string token;  // the one it was sent with: forgotten if etcd refuses it
  Response response;
};

// An Authenticate in flight (authenticate_async()).
struct Client::AuthCall {
  std::uint64_t id = 0;  // its entry in async_calls_
  grpc::ClientContext context;
  pb::AuthenticateRequest request;
  pb::AuthenticateResponse response;
};

namespace {

using Then = std::function<void(grpc::Status)>;

Error closing_error() { return Error(errc::closed, "the etcd client is shutting down"); }

void send(pb::KV::Stub& kv, pb::Lease::Stub&, grpc::ClientContext* context, const pb::RangeRequest* request,
          pb::RangeResponse* response, Then then) {
  kv.async()->Range(context, request, response, std::move(then));
}

void send(pb::KV::Stub& kv, pb::Lease::Stub&, grpc::ClientContext* context, const pb::TxnRequest* request,
          pb::TxnResponse* response, Then then) {
  kv.async()->Txn(context, request, response, std::move(then));
}

void send(pb::KV::Stub&, pb::Lease::Stub& lease, grpc::ClientContext* context,
          const pb::LeaseTimeToLiveRequest* request, pb::LeaseTimeToLiveResponse* response, Then then) {
  lease.async()->LeaseTimeToLive(context, request, response, std::move(then));
}

// Reads are never lost on purpose (etcd/lost_replies.h is about writes).
template <class Request>
bool lost_on_purpose(std::string_view, const Request&) {
  return false;
}
bool lost_on_purpose(std::string_view write_site, const pb::TxnRequest& request) {
  return !write_site.empty() && LostReplies::take(write_site, request);
}

}  // namespace

template <class Request, class Response>
void Client::start_async(std::unique_ptr<AsyncCall<Request, Response>> call) const {
  count_request(call->call);
  auto context = std::make_unique<grpc::ClientContext>();
  {
    MutexLock lock(async_mu_);
    if (draining_) {
      lock.unlock();
      const auto closed = closing_error();
      call->done(Response(), &closed);
      // Only now (a retried call is still registered): drain_async() waits
      // for `done` to have returned.
      if (call->id != 0) end_async_call(call->id);
      return;
    }
    if (call->id == 0) call->id = next_async_call_++;
    // Replaced here, before the old context goes: drain_async() may cancel it.
    async_calls_[call->id] = context.get();
  }
  call->context = std::move(context);
  call->member = pick_member();
  wait_for_connection(*call->context);
  call->response = Response();
  // Owned by the continuation from here: the token source calls it once,
  // with a token or an error, at once or when a fetch ends.
  auto* waiting = call.release();
  authorize_async(waiting->deadline, [this, waiting](const std::string& token, const Error* error) {
    std::unique_ptr<AsyncCall<Request, Response>> call(waiting);
    if (error) {
      call->done(Response(), error);
      return end_async_call(call->id);
    }
    call->token = token;
    if (!token.empty()) call->context->AddMetadata("token", token);
    send_async(std::move(call));
  });
}

template <class Request, class Response>
void Client::send_async(std::unique_ptr<AsyncCall<Request, Response>> call) const {
  auto* in_flight = call.get();
  // Timed from here, after the token: one that was long in coming leaves
  // the request its command timeout all the same, so that a timeout still
  // says whether the member failed (helper-49's review: taken before the
  // token, a slow one had a healthy member abandoned).
  in_flight->started = std::chrono::steady_clock::now();
  in_flight->until = request_deadline(in_flight->deadline);
  in_flight->context->set_deadline(to_system_time(in_flight->until));
  const Member& member = members_[in_flight->member];
  send(*member.kv, *member.lease, in_flight->context.get(), &in_flight->request, &in_flight->response,
       [this, owned = call.release()](grpc::Status status) {
         std::unique_ptr<AsyncCall<Request, Response>> call(owned);
         // A token etcd no longer accepts (it expired, or etcd restarted): renew it once.
         if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED && !username_.empty() && call->attempt == 0) {
           token_.forget(call->token);
           ++call->attempt;
           start_async(std::move(call));
           return;
         }
         const std::uint64_t id = call->id;
         if (status.ok() && lost_on_purpose(call->write_site, call->request)) {
           const Error lost(errc::unavailable, "etcd " + std::string(call->call) +
                                                   " failed: its reply was lost after it committed (test fault at " +
                                                   std::string(call->write_site) + "); endpoints " + endpoints_);
           call->done(Response(), &lost);
         } else if (status.ok()) {
           call->done(std::move(call->response), nullptr);
         } else {
           if (is_member_failure(status, call->until - call->started >= command_timeout_)) {
             abandon(call->member, std::string(call->call) + " failed: " + status.error_message());
           }
           const auto error = call_error(call->call, status);
           if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
             const LeaseNotFound lease_gone(error.what());  // as the blocking calls throw it
             call->done(Response(), &lease_gone);
           } else {
             call->done(Response(), &error);
           }
         }
         // Only now: drain_async() waits for `done` to have returned.
         {
           MutexLock lock(async_mu_);
           async_calls_[id] = nullptr;  // its context goes next: not to be cancelled
         }
         call.reset();
         end_async_call(id);
       });
}

void Client::range_async(pb::RangeRequest request, SteadyTime deadline, Done<pb::RangeResponse> done) const {
  auto call = std::make_unique<AsyncCall<pb::RangeRequest, pb::RangeResponse>>();
  call->call = "Range";
  call->request = std::move(request);
  call->deadline = deadline;
  call->done = std::move(done);
  start_async(std::move(call));
}

void Client::txn_async(pb::TxnRequest request, SteadyTime deadline, std::string_view write_site,
                       Done<pb::TxnResponse> done) const {
  auto call = std::make_unique<AsyncCall<pb::TxnRequest, pb::TxnResponse>>();
  call->call = "Txn";
  call->write_site = write_site;
  call->request = std::move(request);
  call->deadline = deadline;
  call->done = std::move(done);
  start_async(std::move(call));
}

void Client::lease_time_to_live_async(std::int64_t lease_id, SteadyTime deadline,
                                      Done<pb::LeaseTimeToLiveResponse> done) const {
  auto call = std::make_unique<AsyncCall<pb::LeaseTimeToLiveRequest, pb::LeaseTimeToLiveResponse>>();
  call->call = "LeaseTimeToLive";
  call->request.set_id(lease_id);
  call->deadline = deadline;
  call->done = std::move(done);
  start_async(std::move(call));
}

void Client::authorize_async(SteadyTime deadline, AuthToken::Then then) const {
  if (username_.empty()) return then({}, nullptr);
  // Registered until get_async() returns: drain_async() may end the call
  // that `then` continues (abandon_waiters) while the fetch that get_async()
  // starts has yet to begin on this thread, and must not return, nor the
  // client go, before it has (helper-46's review of c18f173).
  std::uint64_t pending = 0;
  try {
    MutexLock lock(async_mu_);
    pending = next_async_call_++;
    async_calls_[pending] = nullptr;  // nothing to cancel
  } catch (const std::exception& error) {
    // Out of memory: `then` owns its call, and must end it.
    const Error failed(errc::unavailable, std::string("could not wait for an auth token: ") + error.what());
    return then({}, &failed);
  }
  token_.get_async(request_deadline(deadline), std::move(then));
  end_async_call(pending);
}

void Client::authenticate_async(std::size_t member, SteadyTime deadline) const {
  auto call = std::make_unique<AuthCall>();
  call->request.set_name(username_);
  call->request.set_password(password_);
  {
    MutexLock lock(async_mu_);
    if (draining_) {
      lock.unlock();
      const auto closed = closing_error();
      token_.fetched({}, &closed);
      return;
    }
    call->id = next_async_call_++;
    async_calls_[call->id] = &call->context;
  }
  wait_for_connection(call->context);
  call->context.set_deadline(to_system_time(request_deadline(deadline)));
  auto* in_flight = call.release();
  members_[member].auth->async()->Authenticate(
      &in_flight->context, &in_flight->request, &in_flight->response, [this, in_flight](grpc::Status status) {
        std::unique_ptr<AuthCall> call(in_flight);
        // The calls that waited for the token go on from here: each is sent,
        // or fails with the error, without blocking.
        if (status.ok()) {
          token_.fetched(call->response.token(), nullptr);
        } else {
          const auto error = authentication_error(status);
          token_.fetched({}, &error);
        }
        const std::uint64_t id = call->id;
        {
          MutexLock lock(async_mu_);
          async_calls_[id] = nullptr;  // its context goes next: not to be cancelled
        }
        call.reset();
        end_async_call(id);
      });
}

void Client::end_async_call(std::uint64_t id) const {
  MutexLock lock(async_mu_);
  async_calls_.erase(id);
  // Under the mutex: once it is free, drain_async() may return and the client
  // go, this condition variable with it (ThreadSanitizer saw the client
  // destroyed during a notify_all() made after the unlock).
  async_done_.notify_all();
}

void Client::drain_async() const {
  {
    MutexLock lock(async_mu_);
    draining_ = true;
    for (const auto& [id, context] : async_calls_) {
      if (context != nullptr) context->TryCancel();
    }
  }
  // Calls waiting for a token that another thread's blocking Authenticate
  // fetches would wait for it (up to a command timeout): they end now. (One
  // that waits for an Authenticate of ours ends as it is cancelled.)
  token_.abandon_waiters(closing_error());
  MutexLock lock(async_mu_);
  async_done_.wait(lock, [&]() ETCDLOCK_REQUIRES(async_mu_) { return async_calls_.empty(); });
}

}  // namespace etcdlock::detail::etcd
