// The internal etcd client: one gRPC channel that carries all of a manager's
// traffic, unary calls with deadlines, and the two bidirectional streams.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "etcd/rpc.grpc.pb.h"
#include "etcdlock/error.h"
#include "etcdlock/options.h"

namespace etcdlock::detail::etcd {

namespace pb = ::etcdserverpb;
using SteadyTime = std::chrono::steady_clock::time_point;

using WatchStream = grpc::ClientReaderWriter<pb::WatchRequest, pb::WatchResponse>;
using KeepAliveStream = grpc::ClientReaderWriter<pb::LeaseKeepAliveRequest, pb::LeaseKeepAliveResponse>;

// etcd no longer knows the lease a request named: it expired or was revoked.
class LeaseNotFound : public Error {
 public:
  explicit LeaseNotFound(const std::string& message) : Error(errc::lock_expired, message) {}
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
         Credentials credentials = {});

  // Waits until a member accepts a connection; false when none did by `deadline`.
  bool wait_connected(SteadyTime deadline);

  pb::RangeResponse range(const pb::RangeRequest& request, SteadyTime deadline) const;
  pb::PutResponse put(const pb::PutRequest& request, SteadyTime deadline) const;
  pb::DeleteRangeResponse delete_range(const pb::DeleteRangeRequest& request, SteadyTime deadline) const;
  pb::TxnResponse txn(const pb::TxnRequest& request, SteadyTime deadline) const;
  // Discards the history before `revision` (an operator's job; tests use it).
  void compact(std::int64_t revision, SteadyTime deadline) const;
  pb::LeaseGrantResponse lease_grant(std::int64_t ttl_seconds, SteadyTime deadline) const;
  // False when etcd no longer knows the lease.
  bool lease_revoke(std::int64_t lease_id, SteadyTime deadline) const;
  // With `keys`, also the keys attached to the lease. TTL -1: no such lease.
  pb::LeaseTimeToLiveResponse lease_time_to_live(std::int64_t lease_id, SteadyTime deadline, bool keys = false) const;

  // Opens a stream on `context`, which the caller keeps alive for the stream's
  // life and may TryCancel() from any thread to end it. The streams ask for a
  // member that has a leader, so a partitioned member fails them. Throws
  // Error when authentication fails.
  std::unique_ptr<WatchStream> open_watch(grpc::ClientContext& context) const;
  std::unique_ptr<KeepAliveStream> open_keep_alive(grpc::ClientContext& context) const;
  // Told how a stream ended, so that a rejected token is renewed before the
  // next one opens.
  void stream_ended(const grpc::Status& status) const;

  // The endpoints as the user gave them, for messages.
  const std::string& endpoints() const { return endpoints_; }
  // The earlier of the caller's deadline and one command timeout from now.
  SteadyTime request_deadline(SteadyTime caller_deadline) const;

  // The etcdlock error for a failed call: unavailable for connectivity and
  // deadline failures (which callers retry), permission_denied for auth
  // failures, invalid_argument for requests etcd rejects.
  Error error_from_status(std::string_view call, const grpc::Status& status) const;
  [[noreturn]] void throw_status(std::string_view call, const grpc::Status& status) const;

 private:
  template <class Response, class Invoke>
  Response unary(std::string_view call, SteadyTime deadline, Invoke invoke) const;
  // Adds the auth token, authenticating first when there is none.
  void authorize(grpc::ClientContext& context, SteadyTime deadline) const;
  std::string authenticate(SteadyTime deadline) const;

  std::string endpoints_;
  std::chrono::milliseconds command_timeout_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::KV::Stub> kv_;
  std::unique_ptr<pb::Lease::Stub> lease_;
  std::unique_ptr<pb::Watch::Stub> watch_;
  std::unique_ptr<pb::Auth::Stub> auth_;
  std::string username_;
  std::string password_;
  mutable std::mutex token_mu_;
  mutable std::string token_;  // guarded by token_mu_; empty until authenticated
};

}  // namespace etcdlock::detail::etcd
