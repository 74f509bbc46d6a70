// The internal etcd client: one gRPC channel that carries all of a manager's
// traffic, unary calls with deadlines, and the two bidirectional streams.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "etcd/rpc.grpc.pb.h"
#include "etcdlock/error.h"

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
  // Throws Error(errc::invalid_argument) for bad endpoints. Does not connect.
  Client(const std::vector<std::string>& endpoints, std::chrono::milliseconds command_timeout);

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
  pb::LeaseTimeToLiveResponse lease_time_to_live(std::int64_t lease_id, SteadyTime deadline) const;

  // Opens a stream on `context`, which the caller keeps alive for the stream's
  // life and may TryCancel() from any thread to end it. The streams ask for a
  // member that has a leader, so a partitioned member fails them.
  std::unique_ptr<WatchStream> open_watch(grpc::ClientContext& context) const;
  std::unique_ptr<KeepAliveStream> open_keep_alive(grpc::ClientContext& context) const;

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

  std::string endpoints_;
  std::chrono::milliseconds command_timeout_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::KV::Stub> kv_;
  std::unique_ptr<pb::Lease::Stub> lease_;
  std::unique_ptr<pb::Watch::Stub> watch_;
};

}  // namespace etcdlock::detail::etcd
