// TxnBatcher: Txns that touch disjoint keys, sent as one while another batch
// is on its way (group commit).
//
// Why: when many threads of one process write at once (a lock per job, 32
// jobs), every Txn costs etcd a raft entry, a WAL write, a request's gRPC
// work and, in etcd 3.4, a copy of its buffer of uncommitted writes
// (docs/benchmarks.md, "Where etcd's CPU goes"), and it costs the client a
// call and a thread hand-off. Txns that touch disjoint keys commute: sent as
// one Txn without compares whose success branch holds each of them as a
// nested Txn, each is evaluated, and takes its success or failure branch,
// exactly as it would alone, at one revision.
//
// A Txn goes at once while fewer than kMaxInFlight batches are on their way,
// so a thread alone is never delayed; otherwise it queues, and the next batch
// takes every queued Txn that touches nothing another of it touches.
//
// What sharing a request changes, and why each is safe:
// - The revision. A batch's Txns share one: keys they create have the same
//   create revision. Two entries of one queue must never (their order and
//   their fencing tokens are their create revisions), and they cannot: a Txn
//   that creates an entry reads its queue's directory, so two of them
//   overlap and never share a batch.
// - A batch whose outcome is unknown (its reply lost, its deadline passed on
//   a hung member) leaves every Txn of it in doubt: each caller gets that
//   error, as it would for its own Txn, and takes its own in-doubt path.
// - The deadline. A batch leaves with its latest member's deadline, so no
//   Txn is failed, in doubt, before its own deadline by another's shorter
//   one; only Txns whose deadlines lie within kDeadlineSpread of each other
//   share a batch, so none is answered more than that after its own.
// - A batch that etcd refuses (an invalid argument, a permission, a lease it
//   no longer has) applied nothing: etcd checks a Txn before it applies any
//   of it. Each Txn is then sent again alone, so that a refusal is its own.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/mutex.h"
#include "etcd/rpc.pb.h"
#include "etcdlock/error.h"

namespace etcdlock::detail::etcd {

namespace pb = ::etcdserverpb;

// A Txn that was never sent: its time to leave had passed, most often while
// it waited behind another batch. It cannot have committed, so unlike a Txn
// sent and not answered it is not in doubt. Its code is unavailable, as for
// any Txn that got no answer.
class NotSent : public Error {
 public:
  explicit NotSent(std::string_view why = "its deadline passed while it waited behind another")
      : Error(errc::unavailable, "etcd Txn not sent: " + std::string(why)) {}
};

// Thread-safe.
class TxnBatcher {
 public:
  // Sends one Txn (a batch, or a Txn alone) and waits for its reply; throws
  // Error.
  using Send = std::function<pb::TxnResponse(const pb::TxnRequest& request, SteadyTime deadline)>;
  // The error that the reply to `request`, a write at `site`, is to be lost
  // with, when a test armed that fault (etcd/lost_replies.h); nullopt
  // otherwise. Takes the armed fault.
  using LoseReply = std::function<std::optional<Error>(std::string_view site, const pb::TxnRequest& request)>;

  // Batches on their way at once; a Txn that finds this many queues.
  // One: while a batch is on its way, the next one fills. Measured with 32
  // threads (docs/benchmarks.md): two or four in flight made smaller batches,
  // and cost etcd and the client more per Txn.
  static constexpr std::size_t kMaxInFlight = 1;
  // Txns in one batch at most, and its size: etcd refuses a Txn of more than
  // 128 operations (--max-txn-ops) or 1.5 MiB (--max-request-bytes) by
  // default. A batch refused as too big (an etcd run with lower limits)
  // halves them for the batches after it.
  static constexpr std::size_t kMaxTxns = 64;
  // Txns share a batch only when their deadlines lie this close to each
  // other: the batch is sent with the latest (reviews of helpers 60 and 61).
  static constexpr std::chrono::milliseconds kDeadlineSpread{25};
  static constexpr std::size_t kMaxBytes = 256 * 1024;

  TxnBatcher(Send send, LoseReply lose_reply);
  TxnBatcher(const TxnBatcher&) = delete;
  TxnBatcher& operator=(const TxnBatcher&) = delete;

  // Sends `request`, alone or in a batch, and returns its own reply (with
  // the batch's header); throws what the send threw, or the lost reply's
  // error. `deadline` bounds the request's answer; `leave_by` (at most
  // `deadline`) its wait in the queue, after which it throws NotSent. With
  // `answer_within`, the answer may come that long after the request leaves,
  // even past `deadline`: its wait in the queue is not counted against it.
  // A caller whose own deadline is short gives it as `leave_by`, and the
  // time etcd needs as `answer_within`: a Txn sent with the short deadline,
  // or one that spent its time in the queue, would go unanswered, in doubt,
  // where one let finish is answered.
  pb::TxnResponse txn(const pb::TxnRequest& request, SteadyTime deadline, std::string_view site,
                      SteadyTime leave_by = SteadyTime::max(),
                      std::chrono::milliseconds answer_within = std::chrono::milliseconds::zero());

  // Txns waiting for a batch to take them (for tests).
  std::size_t waiting() const;

 private:
  // Where a Txn is on its way.
  enum class WaiterState {
    queued,
    batched,  // in a batch that another waiter sends
    sending,  // sends a batch that it is in (first)
    alone,    // its batch was refused: sends itself again, alone
    done,
  };
  struct Waiter;

  // Waits until `self` is sent by another, or is to send, and returns what
  // it is to do next (its state then); throws when its deadline passes
  // before it left.
  WaiterState await(Waiter& self);
  // Takes `first` and the queued Txns that touch nothing it or another
  // taken one touches, in queue order, but none whose deadline has passed.
  std::vector<Waiter*> take_batch(Waiter& first) ETCDLOCK_REQUIRES(mu_);
  // Sends `batch` (more than one Txn) and gives each its outcome, an error
  // when the send failed in any way.
  void send_batch(const std::vector<Waiter*>& batch) noexcept;
  pb::TxnResponse send_alone(const pb::TxnRequest& request, SteadyTime deadline, std::string_view site) const;
  // Hands the sending on to the oldest queued Txn, if any.
  void pass_on() ETCDLOCK_REQUIRES(mu_);

  const Send send_;
  const LoseReply lose_reply_;

  mutable Mutex mu_;
  std::deque<Waiter*> queued_ ETCDLOCK_GUARDED_BY(mu_);
  std::size_t in_flight_ ETCDLOCK_GUARDED_BY(mu_) = 0;
  std::size_t max_txns_ ETCDLOCK_GUARDED_BY(mu_) = kMaxTxns;
  std::size_t max_bytes_ ETCDLOCK_GUARDED_BY(mu_) = kMaxBytes;
};

}  // namespace etcdlock::detail::etcd
