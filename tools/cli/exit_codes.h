// The etcdlock command's exit statuses. `run` otherwise exits with its
// command's own status (128 + N when the command died of signal N).
#pragma once

namespace etcdlock::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 64;           // a bad flag, name, duration; a missing command
inline constexpr int kExitUnavailable = 69;     // etcd could not be reached, or a request failed
inline constexpr int kExitNotAcquired = 73;     // run --try: someone else holds the lock
inline constexpr int kExitNothingToDo = 74;     // unlock --force, revoke: no such holder or lease
inline constexpr int kExitTimeout = 75;         // run --timeout: not acquired in time
inline constexpr int kExitLockLost = 76;        // run: the lock was lost and the command stopped
inline constexpr int kExitPermission = 77;      // etcd denied the request
inline constexpr int kExitCannotExecute = 126;  // run: the command exists but could not be run
inline constexpr int kExitNotFound = 127;       // run: no such command

}  // namespace etcdlock::cli
