#include "etcd/client.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "base/text.h"

#include "base/mutex.h"
#include "etcd/endpoints.h"
#include "etcd/grpc_support.h"
#include "etcd/lost_replies.h"

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

std::shared_ptr<grpc::Channel> make_channel(const std::string& member, const std::string& host_name,
                                            const std::shared_ptr<grpc::ChannelCredentials>& credentials, bool tls) {
  grpc::ChannelArguments args;
  // Addresses are resolved here, so gRPC would check the certificate against
  // an address: have it check the host name the user gave instead.
  if (tls && !host_name.empty()) args.SetSslTargetNameOverride(host_name);
  // Transport keepalive notices a member that stopped answering on an open
  // connection. etcd refuses pings more often than every 5 s
  // (--grpc-keepalive-min-time), and pings without a stream.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 6000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 3000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  // Reconnect quickly after an outage: locks wait on it. (The minimum backoff
  // is left alone: gRPC also uses it as the connect timeout.)
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetMaxReceiveMessageSize(256 * 1024 * 1024);
  // A connection of its own: gRPC would otherwise share one TCP connection
  // among all channels to the same target, so that managers meant to stand
  // apart (as separate processes do) would fail together.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(member, credentials, args);
}

}  // namespace

Client::Client(const std::vector<std::string>& endpoints, std::chrono::milliseconds command_timeout,
               Credentials credentials, Logger log)
    : command_timeout_(command_timeout),
      username_(std::move(credentials.username)),
      password_(std::move(credentials.password)),
      log_(std::move(log)),
      // A fetch for asynchronous callers asks the member in use when it
      // starts: one that follows a failed fetch goes where calls go now.
      token_([this](SteadyTime deadline) { authenticate_async(pick_member(), deadline); }),
      batcher_([this](const pb::TxnRequest& request, SteadyTime deadline) { return send_txn(request, deadline); },
               [this](std::string_view site, const pb::TxnRequest& request) -> std::optional<Error> {
                 if (site.empty() || !LostReplies::take(site, request)) return std::nullopt;
                 return lost_reply_error("Txn", site);
               }) {
  const Target target = parse_endpoints(endpoints, credentials.tls.has_value());
  endpoints_ = target.description;
  const auto channel_security = channel_credentials(credentials.tls);
  for (const auto& member : target.members) {
    Member& added = members_.emplace_back();
    added.target = member;
    added.channel = make_channel(member, target.host_name, channel_security, credentials.tls.has_value());
    added.kv = pb::KV::NewStub(added.channel);
    added.lease = pb::Lease::NewStub(added.channel);
    added.watch = pb::Watch::NewStub(added.channel);
    added.auth = pb::Auth::NewStub(added.channel);
  }
}

Client::~Client() { drain_async(); }

std::string Client::authenticate(std::size_t member, SteadyTime deadline) const {
  grpc::ClientContext context;
  wait_for_connection(context);
  context.set_deadline(to_system_time(request_deadline(deadline)));
  pb::AuthenticateRequest request;
  request.set_name(username_);
  request.set_password(password_);
  pb::AuthenticateResponse response;
  const grpc::Status status = members_[member].auth->Authenticate(&context, request, &response);
  if (!status.ok()) throw authentication_error(status);
  return response.token();
}

Error Client::authentication_error(const grpc::Status& status) const {
  return Error(status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                       status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
                       status.error_code() == grpc::StatusCode::CANCELLED
                   ? errc::unavailable
                   : errc::permission_denied,
               "etcd Authenticate failed for user " + quote_value(username_) + ": " + status.error_message() +
                   "; endpoints " + endpoints_);
}

std::string Client::authorize(grpc::ClientContext& context, SteadyTime deadline) const {
  if (username_.empty()) return {};
  // Concurrent callers wait for one token instead of each asking for their
  // own. One who waited for a fetch that failed asks the member in use when
  // it fetches (etcd replicates a token's grant: any member accepts it).
  auto token = token_.get(request_deadline(deadline), [&] { return authenticate(pick_member(), deadline); });
  context.AddMetadata("token", token);
  return token;
}

bool Client::wait_connected(SteadyTime deadline) {
  // Ask every member to connect, and take the first that does.
  for (;;) {
    for (std::size_t member = 0; member < members_.size(); ++member) {
      if (members_[member].channel->GetState(/*try_to_connect=*/true) == GRPC_CHANNEL_READY) {
        MutexLock lock(members_mu_);
        current_ = member;
        return true;
      }
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    const auto slice = std::min<SteadyTime>(deadline, now + std::chrono::milliseconds(20));
    members_[0].channel->WaitForStateChange(members_[0].channel->GetState(false), to_system_time(slice));
  }
}

std::size_t Client::pick_member() const {
  MutexLock lock(members_mu_);
  if (members_[current_].channel->GetState(/*try_to_connect=*/true) != GRPC_CHANNEL_TRANSIENT_FAILURE) return current_;
  for (std::size_t step = 1; step < members_.size(); ++step) {
    const std::size_t candidate = (current_ + step) % members_.size();
    if (members_[candidate].channel->GetState(true) != GRPC_CHANNEL_TRANSIENT_FAILURE) {
      log_(LogLevel::info, "moving to another etcd member",
           {{"from", members_[current_].target}, {"to", members_[candidate].target}, {"why", "connection failed"}});
      current_ = candidate;
      break;
    }
  }
  return current_;
}

void Client::abandon(std::size_t member, std::string_view why) const {
  MutexLock lock(members_mu_);
  if (members_.size() < 2 || member != current_) return;
  current_ = (current_ + 1) % members_.size();
  log_(LogLevel::warning, "moving to another etcd member",
       {{"from", members_[member].target}, {"to", members_[current_].target}, {"why", std::string(why)}});
  // Streams on the abandoned member would stay there: end them, so that
  // their owners reopen them on the new one.
  for (const auto& [context, stream] : open_streams_) {
    if (stream.member == member) context->TryCancel();
  }
}

void Client::abandon_member_of(grpc::ClientContext& context, std::string_view why) const {
  std::size_t member = 0;
  {
    MutexLock lock(members_mu_);
    const auto found = open_streams_.find(&context);
    if (found == open_streams_.end()) return;
    member = found->second.member;
  }
  abandon(member, why);
}

void Client::stream_ended(grpc::ClientContext& context, const grpc::Status& status) const {
  std::optional<std::size_t> member;
  std::string token;
  {
    MutexLock lock(members_mu_);
    if (const auto found = open_streams_.find(&context); found != open_streams_.end()) {
      member = found->second.member;
      token = std::move(found->second.token);
      open_streams_.erase(found);
    }
  }
  if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED) token_.forget(token);
  if (member && is_member_failure(status, /*had_full_timeout=*/false)) {
    abandon(*member, "stream failed: " + status.error_message());
  }
}

SteadyTime Client::command_deadline() const { return std::chrono::steady_clock::now() + command_timeout_; }

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

Error Client::call_error(std::string_view call, const grpc::Status& status) const {
  auto error = error_from_status(call, status);
  errors_[static_cast<std::size_t>(error.value()) % errors_.size()].fetch_add(1, std::memory_order_relaxed);
  return error;
}

void Client::throw_status(std::string_view call, const grpc::Status& status) const {
  const auto error = call_error(call, status);
  // KV and lease calls answer NOT_FOUND only for a lease etcd no longer has.
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) throw LeaseNotFound(error.what());
  throw error;
}

Error Client::lost_reply_error(std::string_view call, std::string_view write_site) const {
  Error error(errc::unavailable, "etcd " + std::string(call) +
                                     " failed: its reply was lost after it committed (test fault at " +
                                     std::string(write_site) + "); endpoints " + endpoints_);
  errors_[static_cast<std::size_t>(error.value()) % errors_.size()].fetch_add(1, std::memory_order_relaxed);
  return error;
}

void Client::throw_lost_reply(std::string_view call, std::string_view write_site) const {
  throw lost_reply_error(call, write_site);
}

void Client::count_request(std::string_view call) const {
  for (std::size_t i = 0; i < kCalls.size(); ++i) {
    if (kCalls[i] == call) {
      requests_[i].fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
}

std::map<std::string, std::uint64_t> Client::request_counts() const {
  std::map<std::string, std::uint64_t> counts;
  for (std::size_t i = 0; i < kCalls.size(); ++i)
    counts[std::string(kCalls[i])] = requests_[i].load(std::memory_order_relaxed);
  return counts;
}

std::map<std::string, std::uint64_t> Client::error_counts() const {
  std::map<std::string, std::uint64_t> counts;
  for (int code = 1; code <= static_cast<int>(errc::cancelled); ++code) {
    counts[std::string(to_string(static_cast<errc>(code)))] =
        errors_[static_cast<std::size_t>(code)].load(std::memory_order_relaxed);
  }
  return counts;
}

template <class Response, class Invoke>
Response Client::unary(std::string_view call, SteadyTime deadline, Invoke invoke) const {
  for (int attempt = 0;; ++attempt) {
    count_request(call);
    const std::size_t member = pick_member();
    grpc::ClientContext context;
    wait_for_connection(context);
    const auto token = authorize(context, deadline);
    // Timed after the token, as send_async() does (client_async.cc).
    const auto started = std::chrono::steady_clock::now();
    const auto until = request_deadline(deadline);
    context.set_deadline(to_system_time(until));
    Response response;
    const grpc::Status status = invoke(members_[member], &context, &response);
    if (status.ok()) return response;
    // A token etcd no longer accepts (it expired, or etcd restarted): renew it once.
    if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED && !username_.empty() && attempt == 0) {
      token_.forget(token);
      continue;
    }
    if (is_member_failure(status, until - started >= command_timeout_)) {
      std::string why(call);
      why += " failed: ";
      why += status.error_message();
      abandon(member, why);
    }
    throw_status(call, status);
  }
}

pb::RangeResponse Client::range(const pb::RangeRequest& request, SteadyTime deadline) const {
  return unary<pb::RangeResponse>("Range", deadline, [&](const Member& member, auto* context, auto* response) {
    return member.kv->Range(context, request, response);
  });
}

pb::PutResponse Client::put(const pb::PutRequest& request, SteadyTime deadline) const {
  return unary<pb::PutResponse>("Put", deadline, [&](const Member& member, auto* context, auto* response) {
    return member.kv->Put(context, request, response);
  });
}

pb::DeleteRangeResponse Client::delete_range(const pb::DeleteRangeRequest& request, SteadyTime deadline) const {
  return unary<pb::DeleteRangeResponse>("DeleteRange", deadline,
                                        [&](const Member& member, auto* context, auto* response) {
                                          return member.kv->DeleteRange(context, request, response);
                                        });
}

pb::TxnResponse Client::send_txn(const pb::TxnRequest& request, SteadyTime deadline) const {
  return unary<pb::TxnResponse>("Txn", deadline, [&](const Member& member, auto* context, auto* response) {
    return member.kv->Txn(context, request, response);
  });
}

namespace {

// A queue entry's create and delete are what many threads of one process
// send at once (txn_batcher.h).
bool batched(std::string_view write_site) {
  return write_site == write_site::enqueue || write_site == write_site::release;
}

}  // namespace

pb::TxnResponse Client::txn(const pb::TxnRequest& request, SteadyTime deadline, std::string_view write_site) const {
  if (batched(write_site)) return batcher_.txn(request, deadline, write_site);
  auto response = send_txn(request, deadline);
  if (!write_site.empty() && LostReplies::take(write_site, request)) throw_lost_reply("Txn", write_site);
  return response;
}

pb::TxnResponse Client::queue_write(const pb::TxnRequest& request, std::string_view write_site,
                                    SteadyTime leave_by) const {
  if (batched(write_site)) return batcher_.txn(request, command_deadline(), write_site, leave_by, command_timeout_);
  return txn(request, command_deadline(), write_site);  // sent at once
}

void Client::compact(std::int64_t revision, SteadyTime deadline) const {
  pb::CompactionRequest request;
  request.set_revision(revision);
  request.set_physical(true);
  unary<pb::CompactionResponse>("Compact", deadline, [&](const Member& member, auto* context, auto* response) {
    return member.kv->Compact(context, request, response);
  });
}

pb::LeaseGrantResponse Client::lease_grant(std::int64_t ttl_seconds, SteadyTime deadline, BootTime* sent) const {
  pb::LeaseGrantRequest request;
  request.set_ttl(ttl_seconds);
  auto response =
      unary<pb::LeaseGrantResponse>("LeaseGrant", deadline, [&](const Member& member, auto* context, auto* response) {
        // Here the token is in the context: etcd cannot start the lease's
        // TTL before this moment. A retry after a rejected token sets it anew.
        if (sent) *sent = BootClock::now();
        return member.lease->LeaseGrant(context, request, response);
      });
  if (LostReplies::take(write_site::lease_grant, response.id()))
    throw_lost_reply("LeaseGrant", write_site::lease_grant);
  if (!response.error().empty()) {
    throw Error(errc::unavailable, "etcd LeaseGrant failed: " + response.error() + "; endpoints " + endpoints_);
  }
  return response;
}

std::optional<std::int64_t> Client::lease_revoke(std::int64_t lease_id, SteadyTime deadline) const {
  pb::LeaseRevokeRequest request;
  request.set_id(lease_id);
  try {
    const auto response = unary<pb::LeaseRevokeResponse>("LeaseRevoke", deadline,
                                                         [&](const Member& member, auto* context, auto* response) {
                                                           return member.lease->LeaseRevoke(context, request, response);
                                                         });
    if (LostReplies::take(write_site::lease_revoke, lease_id))
      throw_lost_reply("LeaseRevoke", write_site::lease_revoke);
    return response.header().revision();
  } catch (const LeaseNotFound&) {
    return std::nullopt;
  }
}

pb::LeaseTimeToLiveResponse Client::lease_time_to_live(std::int64_t lease_id, SteadyTime deadline, bool keys) const {
  pb::LeaseTimeToLiveRequest request;
  request.set_id(lease_id);
  request.set_keys(keys);
  return unary<pb::LeaseTimeToLiveResponse>("LeaseTimeToLive", deadline,
                                            [&](const Member& member, auto* context, auto* response) {
                                              return member.lease->LeaseTimeToLive(context, request, response);
                                            });
}

void Client::open_stream(grpc::ClientContext& context, std::size_t member, SteadyTime auth_deadline) const {
  prepare_stream(context);
  auto token = authorize(context, auth_deadline);
  MutexLock lock(members_mu_);
  open_streams_[&context] = OpenStream{member, std::move(token)};
}

std::unique_ptr<WatchStream> Client::open_watch(grpc::ClientContext& context) const {
  count_request("Watch");
  const std::size_t member = pick_member();
  open_stream(context, member, command_deadline());
  return members_[member].watch->Watch(&context);
}

std::unique_ptr<KeepAliveStream> Client::open_keep_alive(grpc::ClientContext& context, SteadyTime auth_deadline) const {
  count_request("LeaseKeepAlive");
  const std::size_t member = pick_member();
  open_stream(context, member, auth_deadline);
  return members_[member].lease->LeaseKeepAlive(&context);
}

}  // namespace etcdlock::detail::etcd
