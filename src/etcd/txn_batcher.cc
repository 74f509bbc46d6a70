#include "etcd/txn_batcher.h"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace etcdlock::detail::etcd {
namespace {

// The keys a Txn reads or writes, as etcd names them: [begin, end), where an
// empty end is the key `begin` alone and "\0" every key from `begin` on.
struct KeySpan {
  std::string_view begin;
  std::string_view end;

  bool single() const { return end.empty(); }
  bool unbounded() const { return end.size() == 1 && end[0] == '\0'; }
  bool contains(std::string_view key) const {
    if (single()) return key == begin;
    return key >= begin && (unbounded() || key < end);
  }
};

bool overlap(const KeySpan& a, const KeySpan& b) {
  if (a.single()) return b.contains(a.begin);
  if (b.single()) return a.contains(b.begin);
  return (b.unbounded() || a.begin < b.end) && (a.unbounded() || b.begin < a.end);
}

void add_spans(const pb::TxnRequest& txn, std::vector<KeySpan>& spans);

void add_spans(const pb::RequestOp& op, std::vector<KeySpan>& spans) {
  switch (op.request_case()) {
    case pb::RequestOp::kRequestRange:
      spans.push_back({op.request_range().key(), op.request_range().range_end()});
      break;
    case pb::RequestOp::kRequestPut:
      spans.push_back({op.request_put().key(), {}});
      break;
    case pb::RequestOp::kRequestDeleteRange:
      spans.push_back({op.request_delete_range().key(), op.request_delete_range().range_end()});
      break;
    case pb::RequestOp::kRequestTxn:
      add_spans(op.request_txn(), spans);
      break;
    case pb::RequestOp::REQUEST_NOT_SET:
      break;
  }
}

void add_spans(const pb::TxnRequest& txn, std::vector<KeySpan>& spans) {
  for (const auto& compare : txn.compare()) spans.push_back({compare.key(), compare.range_end()});
  for (const auto& op : txn.success()) add_spans(op, spans);
  for (const auto& op : txn.failure()) add_spans(op, spans);
}

bool overlap(const std::vector<KeySpan>& a, const std::vector<KeySpan>& b) {
  for (const auto& x : a) {
    for (const auto& y : b) {
      if (overlap(x, y)) return true;
    }
  }
  return false;
}

// etcd refused the request before it applied any of it.
bool refused(const Error& error) {
  return error.code() == errc::invalid_argument || error.code() == errc::permission_denied;
}

// etcd refused it for its number of operations or its size.
bool too_big(const Error& error) {
  const std::string_view message = error.what();
  return message.find("too many operations") != std::string_view::npos ||
         message.find("too large") != std::string_view::npos;
}

}  // namespace

struct TxnBatcher::Waiter {
  using State = WaiterState;

  // How a queued Txn's thread is woken, and told what to do next. Shared by
  // the thread and the one that wakes it, so that the waker can notify after
  // it unlocks: the thread may return (and its Waiter go) as soon as it sees
  // `woken_as`. Notified under the mutex instead, a woken thread found the
  // mutex still held and slept on it again (docs/benchmarks.md).
  struct Signal {
    std::mutex mu;
    std::condition_variable changed;
    std::optional<State> woken_as;  // guarded by mu
  };

  Waiter(const pb::TxnRequest& request, SteadyTime deadline, SteadyTime leave_by,
         std::chrono::milliseconds answer_within, std::string_view site)
      : request(request),
        deadline(deadline),
        leave_by(std::min(leave_by, deadline)),
        answer_within(answer_within),
        site(site) {}

  // The deadline of its answer if it leaves at `now`.
  SteadyTime answer_by(SteadyTime now) const {
    return answer_within > std::chrono::milliseconds::zero() ? std::max(deadline, now + answer_within) : deadline;
  }

  // Wakes the waiting thread to do `next`, the state it was given. The signal
  // has a mutex of its own, so that a batch's sender does not wake its
  // waiters into the batcher's mutex.
  void wake(State next) {
    const auto kept = signal;  // `*this` may go once `woken_as` is set
    {
      std::lock_guard lock(kept->mu);
      kept->woken_as = next;
    }
    kept->changed.notify_one();
  }

  const pb::TxnRequest& request;
  SteadyTime deadline;  // of its answer: answer_by() once it leaves the queue
  SteadyTime leave_by;  // of its wait in the queue
  std::chrono::milliseconds answer_within;
  std::string_view site;
  std::vector<KeySpan> spans;
  std::size_t bytes = 0;
  State state = State::queued;  // guarded by the batcher's mu_
  // Its outcome, set before wake(): the signal's mutex orders them before
  // the waiter's read.
  pb::TxnResponse response;
  std::exception_ptr error;
  // Made when it queues: a Txn sent at once is never woken.
  std::shared_ptr<Signal> signal;
};

TxnBatcher::TxnBatcher(Send send, LoseReply lose_reply) : send_(std::move(send)), lose_reply_(std::move(lose_reply)) {}

pb::TxnResponse TxnBatcher::txn(const pb::TxnRequest& request, SteadyTime deadline, std::string_view site,
                                SteadyTime leave_by, std::chrono::milliseconds answer_within) {
  Waiter self(request, deadline, leave_by, answer_within, site);
  bool sending = false;
  {
    MutexLock lock(mu_);
    if (in_flight_ < kMaxInFlight && queued_.empty()) {
      ++in_flight_;
      self.state = Waiter::State::sending;
      sending = true;
    }
  }
  if (!sending) {
    // Measured only when it may share a batch.
    add_spans(request, self.spans);
    self.bytes = request.ByteSizeLong();
    self.signal = std::make_shared<Waiter::Signal>();
    {
      MutexLock lock(mu_);
      if (in_flight_ < kMaxInFlight && queued_.empty()) {
        ++in_flight_;
        self.state = Waiter::State::sending;
        sending = true;
      } else {
        queued_.push_back(&self);
      }
    }
    if (!sending) {
      // Told what to do next by the one that woke it: no need to take mu_,
      // which every Txn of a batch would otherwise take at once on waking.
      switch (await(self)) {
        case Waiter::State::sending:
          break;
        case Waiter::State::alone:
          return send_alone(request, self.deadline, site);
        default:  // done: await returns nothing else
          if (self.error) std::rethrow_exception(self.error);
          return std::move(self.response);
      }
    }
  }
  MutexLock lock(mu_);
  std::vector<Waiter*> batch;
  try {
    // Its time to leave has passed: sent now, it would outlive its caller's
    // wait (or, past its deadline, fail and take the Txns of its batch down
    // with it, in doubt).
    if (SteadyClock::now() >= self.leave_by) throw NotSent();
    batch = take_batch(self);
  } catch (...) {
    --in_flight_;
    pass_on();
    throw;
  }
  lock.unlock();
  std::exception_ptr error;
  if (batch.size() == 1) {
    try {
      self.response = send_alone(request, self.deadline, site);
    } catch (...) {
      error = std::current_exception();
    }
  } else {
    send_batch(batch);
  }
  lock.lock();
  --in_flight_;
  pass_on();
  const auto state = self.state;
  lock.unlock();
  if (batch.size() == 1) {
    if (error) std::rethrow_exception(error);
    return std::move(self.response);
  }
  if (state == Waiter::State::alone) return send_alone(request, self.deadline, site);
  if (self.error) std::rethrow_exception(self.error);
  return std::move(self.response);
}

TxnBatcher::WaiterState TxnBatcher::await(Waiter& self) {
  Waiter::Signal& signal = *self.signal;
  std::unique_lock wake_lock(signal.mu);
  bool on_its_way = false;
  while (!signal.woken_as) {
    if (on_its_way) {
      // In a batch: it leaves with the latest of its Txns' deadlines, at most
      // kDeadlineSpread past this one's.
      signal.changed.wait(wake_lock);
      continue;
    }
    if (signal.changed.wait_until(wake_lock, self.leave_by) == std::cv_status::no_timeout || signal.woken_as) {
      continue;
    }
    wake_lock.unlock();
    {
      MutexLock lock(mu_);
      if (self.state == Waiter::State::queued) {
        std::erase(queued_, &self);
        throw NotSent();
      }
    }
    on_its_way = true;
    wake_lock.lock();
  }
  return *signal.woken_as;
}

std::vector<TxnBatcher::Waiter*> TxnBatcher::take_batch(Waiter& first) {
  // Reserved first: nothing below throws once a Txn has left the queue.
  std::vector<Waiter*> batch;
  batch.reserve(queued_.empty() ? 1 : max_txns_);
  batch.push_back(&first);
  const auto now = SteadyClock::now();
  first.deadline = first.answer_by(now);
  if (queued_.empty()) return batch;
  if (first.spans.empty()) {
    add_spans(first.request, first.spans);
    first.bytes = first.request.ByteSizeLong();
  }
  std::size_t bytes = first.bytes;
  SteadyTime earliest = first.deadline;
  SteadyTime latest = first.deadline;
  for (auto it = queued_.begin(); it != queued_.end() && batch.size() < max_txns_;) {
    Waiter& candidate = **it;
    // The batch leaves with its latest deadline, so its deadlines must lie
    // within kDeadlineSpread of each other: a Txn whose deadline is further
    // off waits for a batch of its own kind, and none is answered more than
    // kDeadlineSpread after its own deadline. One past its time to leave
    // leaves the queue itself, unsent.
    const bool in_time = candidate.leave_by > now;
    const SteadyTime answer_by = candidate.answer_by(now);
    const bool within_spread = std::max(latest, answer_by) - std::min(earliest, answer_by) <= kDeadlineSpread;
    const bool fits = in_time && within_spread && bytes + candidate.bytes <= max_bytes_ &&
                      std::none_of(batch.begin(), batch.end(),
                                   [&](const Waiter* taken) { return overlap(taken->spans, candidate.spans); });
    if (!fits) {
      ++it;
      continue;
    }
    candidate.deadline = answer_by;
    earliest = std::min(earliest, answer_by);
    latest = std::max(latest, answer_by);
    bytes += candidate.bytes;
    batch.push_back(&candidate);
    candidate.state = Waiter::State::batched;
    it = queued_.erase(it);
  }
  return batch;
}

void TxnBatcher::send_batch(const std::vector<Waiter*>& batch) noexcept {
  pb::TxnResponse response;
  // Each waiter is given a copy of the Error to throw, an exception object
  // of its own. Anything else (out of memory) is one object for them all.
  std::optional<Error> failed;
  std::exception_ptr failed_otherwise;
  bool alone = false;
  try {
    pb::TxnRequest combined;
    // The latest of its Txns' deadlines. With the earliest, a batch that
    // etcd answered after it failed the others, in doubt, before their own
    // deadlines: a try_lock_for threw unavailable where it returns false on
    // timeout, and an unlock that etcd answered in its own time counted its
    // hold lost (helper-61's review).
    SteadyTime deadline = batch.front()->deadline;
    for (const Waiter* waiter : batch) {
      *combined.add_success()->mutable_request_txn() = waiter->request;
      deadline = std::max(deadline, waiter->deadline);
    }
    response = send_(combined, deadline);
    for (const Waiter* waiter : batch) {
      // Every armed fault is taken: the batch's one reply carries them all.
      if (auto fault = lose_reply_(waiter->site, waiter->request); fault && !failed) failed = std::move(fault);
    }
    const bool whole = response.responses_size() == static_cast<int>(batch.size()) &&
                       std::all_of(response.responses().begin(), response.responses().end(),
                                   [](const pb::ResponseOp& op) { return op.has_response_txn(); });
    if (!failed && !whole) {
      failed = Error(errc::unavailable, "etcd answered a batch of " + std::to_string(batch.size()) +
                                            " Txns with something else; each is in doubt");
    }
  } catch (const Error& failure) {
    alone = refused(failure);
    failed = failure;
    if (alone && too_big(failure)) {
      MutexLock lock(mu_);
      max_txns_ = std::max<std::size_t>(1, std::min(max_txns_, batch.size() / 2));
      max_bytes_ = std::max<std::size_t>(1, max_bytes_ / 2);
    }
  } catch (...) {
    failed_otherwise = std::current_exception();
  }
  std::size_t given = 0;
  try {
    for (; !alone && given < batch.size(); ++given) {
      Waiter& waiter = *batch[given];
      if (failed || failed_otherwise) {
        waiter.error = failed ? std::make_exception_ptr(*failed) : failed_otherwise;
      } else {
        waiter.response = std::move(*response.mutable_responses(static_cast<int>(given))->mutable_response_txn());
        *waiter.response.mutable_header() = response.header();
      }
    }
  } catch (...) {
    // Out of memory while handing the replies out: the rest learn nothing.
    for (; given < batch.size(); ++given) batch[given]->error = std::current_exception();
  }
  const auto outcome = alone ? Waiter::State::alone : Waiter::State::done;
  {
    MutexLock lock(mu_);
    for (Waiter* waiter : batch) waiter->state = outcome;
  }
  // The first is the sender, this thread.
  for (std::size_t i = 1; i < batch.size(); ++i) batch[i]->wake(outcome);
}

pb::TxnResponse TxnBatcher::send_alone(const pb::TxnRequest& request, SteadyTime deadline,
                                       std::string_view site) const {
  auto response = send_(request, deadline);
  if (auto lost = lose_reply_(site, request)) throw *lost;
  return response;
}

std::size_t TxnBatcher::waiting() const {
  MutexLock lock(mu_);
  return queued_.size();
}

void TxnBatcher::pass_on() {
  if (queued_.empty() || in_flight_ >= kMaxInFlight) return;
  Waiter& next = *queued_.front();
  queued_.pop_front();
  ++in_flight_;
  next.state = Waiter::State::sending;
  next.wake(Waiter::State::sending);
}

}  // namespace etcdlock::detail::etcd
