// AuthToken: the token a client authenticates its calls with, fetched once
// for all of them.
//
// The first caller that finds no token fetches one (an Authenticate call);
// the others wait for that fetch instead of each asking for their own, since
// etcd may spend seconds on one (a hardened bcrypt cost). Nobody waits while
// holding the mutex: a blocking caller waits on a condition variable, no
// longer than its own deadline, and an asynchronous caller leaves a
// continuation, which the end of the fetch calls. So an asynchronous call
// never blocks the gRPC thread it runs on for a token, and the client's
// drain_async() can cancel the fetch it waits for (etcd/client.h).
//
// A fetch that fails for want of an answer (a deadline shorter than theirs,
// a member that went away) does not fail everyone who waited for it. A
// blocking caller that waits fetches next, as if it had been alone;
// otherwise one more fetch is made, for the asynchronous caller with the
// latest deadline, and the others whose deadline is still ahead wait for it.
// An asynchronous caller waits through at most two unanswered fetches, as a
// blocking one does (the fetch it waited for, then its own): a member that
// fails fast is not asked again and again until the deadlines pass. After
// the first, only a fetch made with as much time as the caller's counts: a
// waiting thread's shorter one does not use up its turn (helper-49's
// review). A refusal (a wrong password) is everyone's answer.
//
// Running out of memory while telling the callers terminates the process:
// a caller left untold would hang its call, and the client's close with it.
#pragma once

#include <condition_variable>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/mutex.h"
#include "etcdlock/error.h"

namespace etcdlock::detail::etcd {

// Thread-safe.
class AuthToken {
 public:
  // Called once with the token, or with the error that ended the fetch
  // (then the token is empty). It must neither block nor throw.
  using Then = std::function<void(const std::string& token, const Error* error)>;
  // Begins a fetch for the asynchronous callers, one whose deadline is
  // `deadline`, without blocking: it must call fetched() when done, on any
  // thread, and may do so before it returns.
  using StartFetch = std::function<void(SteadyTime deadline)>;

  explicit AuthToken(StartFetch start_fetch) : start_fetch_(std::move(start_fetch)) {}

  // The token; when there is none, fetches it with `fetch` (which returns it
  // or throws Error), or waits until `deadline` for the fetch under way.
  // Throws what `fetch` threw, or Error(errc::unavailable) when the deadline
  // passed first.
  std::string get(SteadyTime deadline, const std::function<std::string()>& fetch);
  // As get(), without blocking: `then` gets the token at once when there is
  // one; otherwise once the fetch under way ends, or the one it starts.
  // `deadline` is the caller's: past it, a failed fetch is not tried again
  // for it. `then` runs on this thread, or on the one that ends the fetch (or
  // abandons the waiters). Never throws: `then` owns the caller's call, and
  // is called whatever happens (out of memory, with that error).
  void get_async(SteadyTime deadline, Then then) noexcept;
  // A fetch ended: `token`, or `error` (not null) when it failed. The
  // waiting callers are told, or, if it went unanswered, the next fetch
  // starts (above).
  void fetched(const std::string& token, const Error* error) noexcept;
  // etcd refused `token` (it expired, or etcd restarted): the next caller
  // fetches another, unless one replaced it already.
  void forget(const std::string& token);
  // Calls every asynchronous caller that waits for another's fetch with
  // `error` (the client shuts down: a fetch that another thread runs may
  // take a command timeout); those whose own fetch is under way or about to
  // start are told by its end, which drain_async() hastens. Later callers,
  // and every fetch's end from now on, get `error` too.
  void abandon_waiters(const Error& error) noexcept;
  // How many threads wait in get() for a fetch under way (for tests).
  int blocking_waiters() const;

 private:
  // An asynchronous caller waiting for a fetch.
  struct Waiter {
    SteadyTime deadline;
    Then then;
    bool fetched_for = false;  // a fetch of its own was started, or is about to be
    int unanswered = 0;        // fetches it waited through that went unanswered
  };

  // Starts a fetch for `deadline`; a throw ends it with the error, as a
  // failed Authenticate would.
  void start(SteadyTime deadline) noexcept;
  // Ends the fetch under way with errc::unavailable: `why`, and `detail`
  // when given. Built here, so that its message cannot throw in a caller.
  void fetch_failed(const char* why, const char* detail = nullptr) noexcept;

  const StartFetch start_fetch_;
  mutable Mutex mu_;
  std::condition_variable_any fetch_ended_;
  std::string token_ ETCDLOCK_GUARDED_BY(mu_);  // empty until fetched
  bool fetching_ ETCDLOCK_GUARDED_BY(mu_) = false;
  SteadyTime fetch_deadline_ ETCDLOCK_GUARDED_BY(mu_){};     // the deadline of the fetch under way
  int blocking_waiters_ ETCDLOCK_GUARDED_BY(mu_) = 0;        // in get(), waiting for a fetch
  std::vector<Waiter> waiters_ ETCDLOCK_GUARDED_BY(mu_);     // asynchronous callers
  std::optional<Error> abandoned_ ETCDLOCK_GUARDED_BY(mu_);  // set by abandon_waiters()
};

}  // namespace etcdlock::detail::etcd
