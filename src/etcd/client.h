// The internal etcd client: unary calls with deadlines and the two
// bidirectional streams, over one gRPC channel per member.
//
// Why a channel per member: gRPC's pick_first keeps using a member that hangs
// (stopped, its connections open) for tens of seconds, since its connection
// looks healthy. With a channel per member the client chooses: calls and
// streams go to the current member, and a member that fails a call, ends a
// stream with an error, or is reported hung by the session is abandoned for
// the next one, with every stream open on it cancelled.
#pragma once

#include <grpcpp/grpcpp.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/logger.h"
#include "base/mutex.h"
#include "etcd/auth_token.h"
#include "etcd/rpc.grpc.pb.h"
#include "etcd/txn_batcher.h"
#include "etcdlock/deadline.h"
#include "etcdlock/error.h"
#include "etcdlock/options.h"

namespace etcdlock::detail::etcd {

namespace pb = ::etcdserverpb;

using WatchStream = grpc::ClientReaderWriter<pb::WatchRequest, pb::WatchResponse>;
using KeepAliveStream = grpc::ClientReaderWriter<pb::LeaseKeepAliveRequest, pb::LeaseKeepAliveResponse>;

// etcd no longer knows the lease a request named: it expired or was
// revoked. What that means for a hold, the layers above decide.
class LeaseNotFound : public Error {
 public:
  explicit LeaseNotFound(const std::string& message) : Error(errc::invalid_argument, message) {}
};

// Thread-safe. Every unary call throws Error with the code that status maps
// to (see error_from_status) and a message naming the call and the endpoints.
class Client {
 public:
  // How to prove who we are to etcd.
  struct Credentials {
    std::optional<TlsOptions> tls;
    std::string username;
    std::string password;
  };

  // Throws Error(errc::invalid_argument) for bad endpoints and unreadable
  // certificates. Does not connect.
  Client(const std::vector<std::string>& endpoints, std::chrono::milliseconds command_timeout,
         Credentials credentials = {}, Logger log = Logger({}));
  // drain_async().
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Waits until a member accepts a connection and makes it the current one;
  // false when none did by `deadline`.
  bool wait_connected(SteadyTime deadline);

  pb::RangeResponse range(const pb::RangeRequest& request, SteadyTime deadline) const;
  pb::PutResponse put(const pb::PutRequest& request, SteadyTime deadline) const;
  pb::DeleteRangeResponse delete_range(const pb::DeleteRangeRequest& request, SteadyTime deadline) const;
  // A write names its call site (etcd/lost_replies.h) so that tests can lose
  // its reply after it committed.
  pb::TxnResponse txn(const pb::TxnRequest& request, SteadyTime deadline, std::string_view write_site = {}) const;
  // A queue entry's create or delete (`write_site` enqueue, release or
  // multi_enqueue), given command_timeout from its send to be answered,
  // whatever the caller's deadline: one left unanswered is in doubt, and
  // every key in doubt costs a watch for its lease's life. An enqueue or a
  // release may wait to be sent with others (txn_batcher.h) until `leave_by`,
  // then throws NotSent, which cannot have committed; that wait is not
  // counted against its answer. A multi-lock's create is sent at once.
  pb::TxnResponse queue_write(const pb::TxnRequest& request, std::string_view write_site, SteadyTime leave_by) const;
  // The outcome of an asynchronous call: the reply, or the error (then the
  // reply is empty).
  template <class Response>
  using Done = std::function<void(Response&& response, const Error* error)>;
  // As range() and txn(), without blocking the caller: `done` is called
  // once with the reply or the error (as the blocking calls throw it). It
  // must not block; it hands the outcome over. It runs on a gRPC thread;
  // when the call fails before it is sent, on the thread that ends the wait
  // for an auth token (one that fetched it, or drain_async()'s) or on the
  // caller's. A call that drain_async() ends reports errc::closed, or
  // errc::unavailable when a request of it was in flight and cancelled (the
  // call itself, or the Authenticate it waited for, if that ended before
  // drain_async() abandoned the waiters).
  void range_async(pb::RangeRequest request, SteadyTime deadline, Done<pb::RangeResponse> done) const;
  void txn_async(pb::TxnRequest request, SteadyTime deadline, std::string_view write_site,
                 Done<pb::TxnResponse> done) const;
  void lease_time_to_live_async(std::int64_t lease_id, SteadyTime deadline,
                                Done<pb::LeaseTimeToLiveResponse> done) const;
  // Cancels the asynchronous calls in flight and waits until each has called
  // back; later ones fail at once (errc::closed). The owner calls it before
  // it destroys what those callbacks use. Idempotent.
  void drain_async() const;

  // Discards the history before `revision` (an operator's job; tests use it).
  void compact(std::int64_t revision, SteadyTime deadline) const;
  // `sent`, if given, gets the time the granting request went out: after any
  // authentication the call needed, so a slow one does not eat into the TTL
  // that the caller counts from it (etcd starts it later still).
  pb::LeaseGrantResponse lease_grant(std::int64_t ttl_seconds, SteadyTime deadline, BootTime* sent = nullptr) const;
  // The revision as of which the lease and its keys are gone (etcd's, once
  // the revoke applied: every key created up to it was on the lease or not,
  // every later one was not); nullopt when etcd no longer knows the lease.
  std::optional<std::int64_t> lease_revoke(std::int64_t lease_id, SteadyTime deadline) const;
  // With `keys`, also the keys attached to the lease. TTL -1: no such lease.
  pb::LeaseTimeToLiveResponse lease_time_to_live(std::int64_t lease_id, SteadyTime deadline, bool keys = false) const;

  // Opens a stream on the current member, on `context`, which the caller
  // keeps alive until it has called stream_ended(). The client may
  // TryCancel() it to move the stream off a member it abandons. The streams
  // ask for a member that has a leader, so a partitioned member ends them.
  // Throws Error when authentication fails; a token that must be fetched
  // first is fetched by `auth_deadline` (one command timeout for a watch).
  std::unique_ptr<WatchStream> open_watch(grpc::ClientContext& context) const;
  std::unique_ptr<KeepAliveStream> open_keep_alive(grpc::ClientContext& context, SteadyTime auth_deadline) const;
  // How a stream opened on `context` ended: a rejected token is renewed
  // before the next stream opens, and a member that failed is abandoned.
  void stream_ended(grpc::ClientContext& context, const grpc::Status& status) const;

  // The member that `context`'s stream runs on stopped answering: use another
  // one from now on. No effect when the client has moved on already.
  void abandon_member_of(grpc::ClientContext& context, std::string_view why) const;

  // The endpoints as the user gave them, for messages.
  const std::string& endpoints() const { return endpoints_; }
  std::chrono::milliseconds command_timeout() const { return command_timeout_; }
  // One command timeout from now.
  SteadyTime command_deadline() const;
  // The earlier of the caller's deadline and one command timeout from now.
  SteadyTime request_deadline(SteadyTime caller_deadline) const;

  // Txns waiting to be sent in a batch (etcd/txn_batcher.h; for tests).
  std::size_t txns_waiting() const { return batcher_.waiting(); }

  // Requests sent, by call ("Range", "Txn", ...; streams by their opening),
  // and failures, by errc name: what LockManager::metrics() reports.
  std::map<std::string, std::uint64_t> request_counts() const;
  std::map<std::string, std::uint64_t> error_counts() const;

  // The etcdlock error for a failed call: unavailable for connectivity and
  // deadline failures (which callers retry), permission_denied for auth
  // failures, invalid_argument for requests etcd rejects.
  Error error_from_status(std::string_view call, const grpc::Status& status) const;

 private:
  struct Member {
    std::string target;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<pb::KV::Stub> kv;
    std::unique_ptr<pb::Lease::Stub> lease;
    std::unique_ptr<pb::Watch::Stub> watch;
    std::unique_ptr<pb::Auth::Stub> auth;
  };

  template <class Response, class Invoke>
  Response unary(std::string_view call, SteadyTime deadline, Invoke invoke) const;
  template <class Request, class Response>
  struct AsyncCall;
  template <class Request, class Response>
  void start_async(std::unique_ptr<AsyncCall<Request, Response>> call) const;
  // Sends a call that start_async() registered and authorized.
  template <class Request, class Response>
  void send_async(std::unique_ptr<AsyncCall<Request, Response>> call) const;
  struct AuthCall;
  // The error of a failed call, counted.
  Error call_error(std::string_view call, const grpc::Status& status) const;
  void count_request(std::string_view call) const;
  [[noreturn]] void throw_status(std::string_view call, const grpc::Status& status) const;
  // The error of a reply that a test made the client lose (etcd/lost_replies.h).
  Error lost_reply_error(std::string_view call, std::string_view write_site) const;
  [[noreturn]] void throw_lost_reply(std::string_view call, std::string_view write_site) const;
  // One Txn, alone: what txn() sends, and what the batcher sends.
  pb::TxnResponse send_txn(const pb::TxnRequest& request, SteadyTime deadline) const;
  // The member to use now: the current one, unless its connection failed
  // and another member's has not.
  std::size_t pick_member() const;
  void abandon(std::size_t member, std::string_view why) const;
  void open_stream(grpc::ClientContext& context, std::size_t member, SteadyTime auth_deadline) const;
  // Adds the auth token, authenticating first when there is none; returns
  // it (empty without a user).
  std::string authorize(grpc::ClientContext& context, SteadyTime deadline) const;
  std::string authenticate(std::size_t member, SteadyTime deadline) const;
  // As authorize() without blocking: `then` gets the token to add (empty
  // without a user), or the error that kept it from being had.
  void authorize_async(SteadyTime deadline, AuthToken::Then then) const;
  // An Authenticate on gRPC's callback API, cancelled by drain_async(); it
  // reports to token_.fetched().
  void authenticate_async(std::size_t member, SteadyTime deadline) const;
  Error authentication_error(const grpc::Status& status) const;
  // An asynchronous call (or Authenticate) has ended and called back: it
  // leaves async_calls_, and drain_async() may return once that is empty.
  void end_async_call(std::uint64_t id) const;

  std::string endpoints_;
  std::chrono::milliseconds command_timeout_;
  std::vector<Member> members_;
  std::string username_;
  std::string password_;
  Logger log_;

  mutable Mutex members_mu_;
  mutable std::size_t current_ ETCDLOCK_GUARDED_BY(members_mu_) = 0;
  struct OpenStream {
    std::size_t member = 0;
    std::string token;  // the one it was opened with: forgotten if etcd refuses it
  };
  mutable std::map<grpc::ClientContext*, OpenStream> open_streams_ ETCDLOCK_GUARDED_BY(members_mu_);

  // Counted without a lock: one slot per call of kCalls, per errc value.
  static constexpr std::array<std::string_view, 10> kCalls{"Range",   "Put",           "DeleteRange", "Txn",
                                                           "Compact", "LeaseGrant",    "LeaseRevoke", "LeaseTimeToLive",
                                                           "Watch",   "LeaseKeepAlive"};
  mutable std::array<std::atomic<std::uint64_t>, kCalls.size()> requests_{};
  mutable std::array<std::atomic<std::uint64_t>, 16> errors_{};

  mutable Mutex async_mu_;
  mutable std::condition_variable_any async_done_;
  // The contexts of the asynchronous calls in flight, by call: a call keeps
  // its entry until its `done` has returned.
  mutable std::map<std::uint64_t, grpc::ClientContext*> async_calls_ ETCDLOCK_GUARDED_BY(async_mu_);
  mutable std::uint64_t next_async_call_ ETCDLOCK_GUARDED_BY(async_mu_) = 1;
  mutable bool draining_ ETCDLOCK_GUARDED_BY(async_mu_) = false;

  mutable AuthToken token_;  // used only with a user name
  mutable TxnBatcher batcher_;
};

}  // namespace etcdlock::detail::etcd
