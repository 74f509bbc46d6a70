#include "etcd/client.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "key_space.h"

#include "etcd/endpoints.h"

namespace etcdlock::detail::etcd {
namespace {

// A PEM given as its text, or read from the path given.
std::string load_pem(const std::string& value, std::string_view what) {
  if (value.empty() || value.starts_with("-----BEGIN")) return value;
  std::ifstream file(value);
  std::stringstream text;
  text << file.rdbuf();
  if (!file || text.str().empty()) {
    throw Error(errc::invalid_argument, "cannot read the " + std::string(what) + " file " + quote_value(value));
  }
  return text.str();
}

std::shared_ptr<grpc::ChannelCredentials> channel_credentials(const std::optional<TlsOptions>& tls) {
  if (!tls) return grpc::InsecureChannelCredentials();
  if (tls->cert.empty() != tls->key.empty()) {
    throw Error(errc::invalid_argument, "a client certificate needs its key, and a key its certificate");
  }
  grpc::SslCredentialsOptions pem;
  pem.pem_root_certs = load_pem(tls->ca, "CA certificate");
  pem.pem_cert_chain = load_pem(tls->cert, "client certificate");
  pem.pem_private_key = load_pem(tls->key, "client key");
  return grpc::SslCredentials(pem);
}

std::shared_ptr<grpc::Channel> make_channel(const Target& target, const std::optional<TlsOptions>& tls) {
  grpc::ChannelArguments args;
  // Addresses are resolved here, so gRPC would check the certificate against
  // an address: have it check the host name the user gave instead.
  if (tls && !target.host_name.empty()) args.SetSslTargetNameOverride(target.host_name);
  // Transport keepalive notices a member that stopped answering on an open
  // connection, so gRPC moves to another address. etcd refuses pings more often
  // than every 5 s (--grpc-keepalive-min-time), and pings without a stream.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 6000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 3000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  // Reconnect quickly after an outage: locks wait on it. (The minimum backoff
  // is left alone: gRPC also uses it as the connect timeout.)
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetMaxReceiveMessageSize(256 * 1024 * 1024);
  args.SetLoadBalancingPolicyName("pick_first");
  // A connection of its own: gRPC would otherwise share one TCP connection
  // among all channels to the same target, so that managers meant to stand
  // apart (as separate processes do) would fail together.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(target.grpc_target, channel_credentials(tls), args);
}

// gRPC takes deadlines on the system clock; etcdlock keeps them on the steady one.
std::chrono::system_clock::time_point to_system_time(SteadyTime deadline) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(deadline - std::chrono::steady_clock::now());
}

// Every call waits for a connection until its deadline instead of failing at
// once while the channel reconnects. Besides the retry this saves, it matters
// for the sync API: a call that waits is what drives the connection attempt;
// without one, only gRPC's backup poller does, every 5 s.
void wait_for_connection(grpc::ClientContext& context) { context.set_wait_for_ready(true); }

void prepare_stream(grpc::ClientContext& context) {
  wait_for_connection(context);
  // etcd's "hasleader" metadata: a member cut off from its cluster ends the
  // stream instead of keeping it open and silent.
  context.AddMetadata("hasleader", "true");
}

errc errc_from_status(const grpc::Status& status) {
  // etcd reports a failed authentication as INVALID_ARGUMENT.
  const auto& message = status.error_message();
  if (message.find("authentication failed") != std::string::npos ||
      message.find("user name is empty") != std::string::npos ||
      message.find("permission denied") != std::string::npos) {
    return errc::permission_denied;
  }
  switch (status.error_code()) {
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
      return errc::permission_denied;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::UNIMPLEMENTED:
      return errc::invalid_argument;
    default:  // UNAVAILABLE, DEADLINE_EXCEEDED, leader changes, ...: worth a retry
      return errc::unavailable;
  }
}

const char* status_name(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "gRPC status";
  }
}

}  // namespace

Client::Client(const std::vector<std::string>& endpoints, std::chrono::milliseconds command_timeout,
               Credentials credentials)
    : command_timeout_(command_timeout),
      username_(std::move(credentials.username)),
      password_(std::move(credentials.password)) {
  const Target target = parse_endpoints(endpoints, credentials.tls.has_value());
  endpoints_ = target.description;
  channel_ = make_channel(target, credentials.tls);
  kv_ = pb::KV::NewStub(channel_);
  lease_ = pb::Lease::NewStub(channel_);
  watch_ = pb::Watch::NewStub(channel_);
  auth_ = pb::Auth::NewStub(channel_);
}

std::string Client::authenticate(SteadyTime deadline) const {
  grpc::ClientContext context;
  wait_for_connection(context);
  context.set_deadline(to_system_time(request_deadline(deadline)));
  pb::AuthenticateRequest request;
  request.set_name(username_);
  request.set_password(password_);
  pb::AuthenticateResponse response;
  const grpc::Status status = auth_->Authenticate(&context, request, &response);
  if (!status.ok()) {
    throw Error(status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                        status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED
                    ? errc::unavailable
                    : errc::permission_denied,
                "etcd Authenticate failed for user " + quote_value(username_) + ": " + status.error_message() +
                    "; endpoints " + endpoints_);
  }
  return response.token();
}

void Client::authorize(grpc::ClientContext& context, SteadyTime deadline) const {
  if (username_.empty()) return;
  std::lock_guard lock(token_mu_);
  // Authenticating under the lock makes concurrent callers wait for one token
  // instead of each asking for their own.
  if (token_.empty()) token_ = authenticate(deadline);
  context.AddMetadata("token", token_);
}

void Client::stream_ended(const grpc::Status& status) const {
  if (status.error_code() != grpc::StatusCode::UNAUTHENTICATED) return;
  std::lock_guard lock(token_mu_);
  token_.clear();
}

bool Client::wait_connected(SteadyTime deadline) {
  return channel_->WaitForConnected(to_system_time(deadline));
}

SteadyTime Client::request_deadline(SteadyTime caller_deadline) const {
  const auto now = std::chrono::steady_clock::now();
  if (caller_deadline <= now) return now;
  return std::min(caller_deadline, now + command_timeout_);
}

Error Client::error_from_status(std::string_view call, const grpc::Status& status) const {
  std::string message = "etcd " + std::string(call) + " failed: " + status_name(status.error_code());
  if (!status.error_message().empty()) message += " (" + status.error_message() + ")";
  message += "; endpoints " + endpoints_;
  return Error(errc_from_status(status), message);
}

void Client::throw_status(std::string_view call, const grpc::Status& status) const {
  // KV and lease calls answer NOT_FOUND only for a lease etcd no longer has.
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
    throw LeaseNotFound(error_from_status(call, status).what());
  }
  throw error_from_status(call, status);
}

template <class Response, class Invoke>
Response Client::unary(std::string_view call, SteadyTime deadline, Invoke invoke) const {
  for (int attempt = 0;; ++attempt) {
    grpc::ClientContext context;
    wait_for_connection(context);
    context.set_deadline(to_system_time(request_deadline(deadline)));
    authorize(context, deadline);
    Response response;
    const grpc::Status status = invoke(&context, &response);
    if (status.ok()) return response;
    // A token etcd no longer accepts (it expired, or etcd restarted): renew it once.
    if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED && !username_.empty() && attempt == 0) {
      stream_ended(status);
      continue;
    }
    throw_status(call, status);
  }
}

pb::RangeResponse Client::range(const pb::RangeRequest& request, SteadyTime deadline) const {
  return unary<pb::RangeResponse>("Range", deadline,
                                  [&](auto* context, auto* response) { return kv_->Range(context, request, response); });
}

pb::PutResponse Client::put(const pb::PutRequest& request, SteadyTime deadline) const {
  return unary<pb::PutResponse>("Put", deadline,
                                [&](auto* context, auto* response) { return kv_->Put(context, request, response); });
}

pb::DeleteRangeResponse Client::delete_range(const pb::DeleteRangeRequest& request, SteadyTime deadline) const {
  return unary<pb::DeleteRangeResponse>(
      "DeleteRange", deadline, [&](auto* context, auto* response) { return kv_->DeleteRange(context, request, response); });
}

pb::TxnResponse Client::txn(const pb::TxnRequest& request, SteadyTime deadline) const {
  return unary<pb::TxnResponse>("Txn", deadline,
                                [&](auto* context, auto* response) { return kv_->Txn(context, request, response); });
}

void Client::compact(std::int64_t revision, SteadyTime deadline) const {
  pb::CompactionRequest request;
  request.set_revision(revision);
  request.set_physical(true);
  unary<pb::CompactionResponse>("Compact", deadline,
                                [&](auto* context, auto* response) { return kv_->Compact(context, request, response); });
}

pb::LeaseGrantResponse Client::lease_grant(std::int64_t ttl_seconds, SteadyTime deadline) const {
  pb::LeaseGrantRequest request;
  request.set_ttl(ttl_seconds);
  auto response = unary<pb::LeaseGrantResponse>(
      "LeaseGrant", deadline, [&](auto* context, auto* response) { return lease_->LeaseGrant(context, request, response); });
  if (!response.error().empty()) {
    throw Error(errc::unavailable, "etcd LeaseGrant failed: " + response.error() + "; endpoints " + endpoints_);
  }
  return response;
}

bool Client::lease_revoke(std::int64_t lease_id, SteadyTime deadline) const {
  pb::LeaseRevokeRequest request;
  request.set_id(lease_id);
  grpc::ClientContext context;
  wait_for_connection(context);
  context.set_deadline(to_system_time(request_deadline(deadline)));
  authorize(context, deadline);
  pb::LeaseRevokeResponse response;
  const grpc::Status status = lease_->LeaseRevoke(&context, request, &response);
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) return false;
  if (!status.ok()) throw error_from_status("LeaseRevoke", status);
  return true;
}

pb::LeaseTimeToLiveResponse Client::lease_time_to_live(std::int64_t lease_id, SteadyTime deadline, bool keys) const {
  pb::LeaseTimeToLiveRequest request;
  request.set_id(lease_id);
  request.set_keys(keys);
  return unary<pb::LeaseTimeToLiveResponse>("LeaseTimeToLive", deadline, [&](auto* context, auto* response) {
    return lease_->LeaseTimeToLive(context, request, response);
  });
}

std::unique_ptr<WatchStream> Client::open_watch(grpc::ClientContext& context) const {
  prepare_stream(context);
  authorize(context, request_deadline(SteadyTime::max()));
  return watch_->Watch(&context);
}

std::unique_ptr<KeepAliveStream> Client::open_keep_alive(grpc::ClientContext& context) const {
  prepare_stream(context);
  authorize(context, request_deadline(SteadyTime::max()));
  return lease_->LeaseKeepAlive(&context);
}

}  // namespace etcdlock::detail::etcd
