// Options of a LockManager and of its locks: plain aggregates whose defaults are
// those of the Go-style lock API etcdlock follows (TTL 30 s, retry interval
// 100 ms, unlimited retries).
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "etcdlock/log.h"

namespace etcdlock {

// TLS to etcd. Each field is a PEM file's path, or the PEM text itself
// (anything that starts with "-----BEGIN").
struct TlsOptions {
  // The CA that signed etcd's certificate; empty: the system's roots. The
  // certificate must name the endpoint's host (or IP address).
  std::string ca;
  // A client certificate and its key, for etcd's --client-cert-auth.
  std::string cert;
  std::string key;
};

struct ManagerOptions {
  // etcd client endpoints, "host:port" or "http://host:port". Several endpoints
  // name the members of one cluster; a request that loses its member goes on
  // through another.
  std::vector<std::string> endpoints{"127.0.0.1:2379"};
  // This manager's namespace in etcd. A lock named "jobs" lives at "<prefix>/jobs/".
  std::string prefix{"/etcdlock"};
  // TTL of the one lease shared by every lock of the manager. A process that dies
  // without closing its manager releases its locks at most this long afterwards.
  // From 1 s to 24 h.
  std::chrono::seconds ttl{30};
  // Shown as the holder in lock info; empty means "<hostname>:<pid>".
  // UTF-8 (checked: errc::invalid_argument).
  std::string owner;
  // How long the constructor waits for the first connection to etcd.
  std::chrono::milliseconds dial_timeout{5000};
  // The deadline of one request to etcd; calls with their own, shorter deadline use theirs,
  // except for the write that queues or releases an entry: it has the whole command timeout
  // from when it is sent, since one left unanswered is in doubt (see try_lock_for).
  // So a timed call may return after its deadline, by up to about two command timeouts
  // while etcd is slow; an unlock() may take about as long when its release waits behind
  // another request of the manager.
  std::chrono::milliseconds command_timeout{5000};
  // Set to connect with TLS. https:// endpoints require it.
  std::optional<TlsOptions> tls;
  // etcd authentication: a user and password for etcd's Authenticate call. The
  // token it returns goes with every request, and is renewed when etcd
  // rejects it (it expired, or etcd restarted). Empty: no authentication.
  std::string username;
  std::string password;
  // Receives the manager's log lines: lease granted, renewals failing, lease
  // lost and replaced, locks acquired and released (debug), lost (warning).
  // Empty means stderr_log_sink(): warnings and errors to stderr.
  LogSink log_sink;
  // Count acquisitions, waits, holds, losses, requests and errors for
  // LockManager::metrics() (atomics; off saves a few of them per call).
  bool metrics = true;
  // Counted one by one: this many names; the names past them are counted
  // together (under the empty name), so that metrics stay bounded.
  std::size_t metrics_names = 256;
};

// How long before etcd could expire a lease of `ttl` a manager declares it
// lost and signals every hold on it: a fifth of the TTL, from 250 ms to 5 s.
// Whatever a holder must stop on loss (a child process, say) must stop within
// this margin, before another holder can be let in.
std::chrono::milliseconds loss_margin(std::chrono::seconds ttl);

// Retries of transient etcd failures (unavailable members, leader changes)
// back off exponentially with jitter: the n-th pause is drawn from
// [c / 2, c], where c is retry_interval doubled n - 1 times, at most
// max_retry_interval (or retry_interval itself, when that is longer). So
// clients that failed together do not retry together.
// A retry that would start after the call's deadline is not made.
struct LockOptions {
  // The base pause between retries of transient etcd failures. Up to 1 h.
  std::chrono::milliseconds retry_interval{100};
  // How many transient failures one call retries; 0 retries until the caller's deadline.
  int max_retries{0};
  // The longest pause between two retries (see above). Up to 1 h.
  std::chrono::milliseconds max_retry_interval{2000};
  // true: the holding thread may lock again and must unlock as often, as with
  // std::recursive_timed_mutex. false: relocking throws errc::lock_already_held.
  bool reentrant{true};

  friend bool operator==(const LockOptions&, const LockOptions&) = default;
};

struct SemaphoreOptions {
  // The base pause between retries of transient etcd failures while acquiring
  // (backing off as LockOptions say).
  std::chrono::milliseconds retry_interval{100};
  // How many transient failures one acquisition retries; 0 retries until its deadline.
  int max_retries{0};
  // The longest pause between two retries (see above). Up to 1 h.
  std::chrono::milliseconds max_retry_interval{2000};

  friend bool operator==(const SemaphoreOptions&, const SemaphoreOptions&) = default;
};

struct ElectionOptions {
  // The base pause between retries of transient etcd failures while
  // campaigning (backing off as LockOptions say).
  std::chrono::milliseconds retry_interval{100};
  // How many transient failures one campaign retries; 0 retries until its deadline.
  int max_retries{0};
  // The longest pause between two retries (see above). Up to 1 h.
  std::chrono::milliseconds max_retry_interval{2000};

  friend bool operator==(const ElectionOptions&, const ElectionOptions&) = default;
};

}  // namespace etcdlock
