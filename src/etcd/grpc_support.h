// What the etcd client needs of gRPC beside the stubs: deadlines on the
// system clock, how a call waits for its connection, and what a failed call's
// status means for etcdlock (its errc, and whether the member failed).
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "etcdlock/deadline.h"
#include "etcdlock/error.h"

namespace etcdlock::detail::etcd {

// gRPC takes deadlines on the system clock; etcdlock keeps them on the steady one.
std::chrono::system_clock::time_point to_system_time(SteadyTime deadline);

// Every call waits for a connection until its deadline instead of failing at
// once while the channel reconnects. Besides the retry this saves, it matters
// for the sync API: a call that waits is what drives the connection attempt;
// without one, only gRPC's backup poller does, every 5 s.
void wait_for_connection(grpc::ClientContext& context);

// As a call, and with etcd's "hasleader" metadata: a member cut off from its
// cluster ends the stream instead of keeping it open and silent.
void prepare_stream(grpc::ClientContext& context);

// unavailable for connectivity and deadline failures (which callers retry),
// permission_denied for auth failures, invalid_argument for requests etcd
// rejects.
errc errc_from_status(const grpc::Status& status);
const char* status_name(grpc::StatusCode code);

// A failure of the member rather than of the request: the connection to it
// failed, or it did not answer within a whole command timeout. Errors that a
// live member sends ("etcdserver: leader changed", "no leader", "request timed
// out") are the cluster's, passing: every member would say the same, and
// moving would only break the streams.
bool is_member_failure(const grpc::Status& status, bool had_full_timeout);

}  // namespace etcdlock::detail::etcd
