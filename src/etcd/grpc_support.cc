#include "etcd/grpc_support.h"

#include <string>

namespace etcdlock::detail::etcd {

std::chrono::system_clock::time_point to_system_time(SteadyTime deadline) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(deadline - std::chrono::steady_clock::now());
}

void wait_for_connection(grpc::ClientContext& context) { context.set_wait_for_ready(true); }

void prepare_stream(grpc::ClientContext& context) {
  wait_for_connection(context);
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
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "gRPC status";
  }
}

bool is_member_failure(const grpc::Status& status, bool had_full_timeout) {
  if (status.error_message().starts_with("etcdserver:")) return false;
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED && had_full_timeout);
}

}  // namespace etcdlock::detail::etcd
