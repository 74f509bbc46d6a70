#include "queue/multi_acquisition.h"

#include <atomic>

#include "base/text.h"
#include "etcd/lost_replies.h"
#include "etcd/txn_batcher.h"
#include "keys/key_layout.h"
#include "queue/admission.h"
#include "queue/entry_removal.h"

namespace etcdlock::detail {

MultiAcquisition::MultiAcquisition(std::shared_ptr<PrimitiveContext> context, std::vector<Queue> queues,
                                   std::string description, RetryPolicy retry)
    : context_(std::move(context)),
      queues_(std::move(queues)),
      description_(std::move(description)),
      retry_(retry),
      admitted_(queues_.size(), false) {
  for (const auto& queue : queues_) {
    // With several queues, try_once confirms every entry in one read once
    // the last queue admits it (confirm_all), so notes need no read of their own.
    QueueWait::Entry entry{context_->entry_value(), "", Admission::exclusive(), {}, true, queues_.size() > 1};
    waits_.push_back(std::make_unique<QueueWait>(context_, queue.dir, std::move(entry)));
  }
}

std::optional<MultiAcquisition::Acquired> MultiAcquisition::run(SteadyTime deadline, const std::stop_token& cancel,
                                                                QueueWait::Mode mode) {
  std::optional<Acquired> acquired;
  const auto try_once = [&](const std::shared_ptr<Session>& session) {
    const auto outcome = this->try_once(session, deadline, cancel, mode);
    if (outcome != TryOutcome::acquired) return outcome;
    acquired = take_holds(session);
    return acquired ? TryOutcome::acquired : TryOutcome::again;
  };
  acquire_with_retries(*context_, retry_, description_, queues_.front().name, deadline, cancel, mode, try_once,
                       [this] { remove_entries(); });
  return acquired;
}

TryOutcome MultiAcquisition::try_once(const std::shared_ptr<Session>& session, SteadyTime deadline,
                                      const std::stop_token& cancel, QueueWait::Mode mode) {
  if (lease_id_ != session->lease_id()) begin(*session);
  if (revision_ == 0) {
    while (!enqueue(*session, deadline)) {
    }
  }
  for (std::size_t i = 0; i < queues_.size(); ++i) {
    if (admitted_[i]) continue;
    // Admitted later than at the enqueue's revision: an entry admitted
    // earlier may have been deleted (a force unlock) meanwhile.
    confirm_pending_ = queues_.size() > 1;
    waited_ = true;
    switch (waits_[i]->run(session, deadline, cancel, mode)) {
      case QueueWait::Result::acquired:
        admitted_[i] = true;
        continue;
      case QueueWait::Result::entry_lost:
        return lose_entries("queue entry of " + quote_value(queues_[i].name) + " lost while waiting");
      case QueueWait::Result::not_acquired:
        return TryOutcome::not_acquired;
    }
  }
  if (confirm_pending_) {
    if (!confirm_all(deadline)) return lose_entries("an entry was gone once every queue had admitted it");
    confirm_pending_ = false;
  }
  return TryOutcome::acquired;
}

std::optional<QueueAttempt::Held> MultiAcquisition::take_holds(const std::shared_ptr<Session>& session) {
  Held held{{}, waited_, in_doubt_};
  for (std::size_t i = 0; i < queues_.size(); ++i) {
    held.holds.push_back(std::make_shared<Hold>(context_, session, QueueEntry{keys_[i], revision_}, "lock",
                                                queues_[i].name, queues_[i].counters));
    held.holds.back()->start();
  }
  for (const auto& hold : held.holds) {
    if (!hold->lost()) continue;
    // Its lease ended just now: queue again, on a new one.
    for (const auto& each : held.holds) each->finish();
    lose_entries("the lease ended as the hold began");
    return std::nullopt;
  }
  return held;
}

void MultiAcquisition::set_waker(std::function<void()> waker) {
  for (const auto& wait : waits_) wait->set_waker(waker);
}

std::optional<QueueWait::Result> MultiAcquisition::start(const std::shared_ptr<Session>& session, SteadyTime deadline,
                                                         QueueWait::Mode mode) {
  session_ = session;
  mode_ = mode;
  if (lease_id_ != session->lease_id()) begin(*session);
  if (revision_ == 0) {
    while (!enqueue(*session, deadline)) {
    }
  }
  return advance(deadline, /*give_up_now=*/false);
}

QueueWait::Poll MultiAcquisition::poll(const Session& session, SteadyTime deadline, bool give_up_now, bool grace_over) {
  for (;;) {
    std::size_t index = 0;
    while (index < admitted_.size() && admitted_[index]) ++index;
    if (index == admitted_.size()) return {QueueWait::Poll::State::waiting};  // not waiting: start() decided
    const auto polled = waits_[index]->poll(session, deadline, give_up_now, grace_over);
    if (polled.state != QueueWait::Poll::State::decided) return polled;
    auto decided = on_queue_result(index, polled.result);
    if (!decided) decided = advance(deadline, give_up_now);
    if (decided) return {QueueWait::Poll::State::decided, *decided};
    // The next queue's wait began: what came for it before (its note, from
    // the release Txn just acted on or from an earlier one of another
    // holder) woke nothing that looked at that queue, so it is looked at
    // now, as a blocking wait does before it sleeps.
    grace_over = false;
  }
}

std::optional<QueueWait::Result> MultiAcquisition::advance(SteadyTime deadline, bool give_up_now) {
  for (std::size_t i = 0; i < queues_.size(); ++i) {
    if (admitted_[i]) continue;
    // Admitted later than at the enqueue's revision: an entry admitted
    // earlier may have been deleted (a force unlock) meanwhile.
    confirm_pending_ = queues_.size() > 1;
    waited_ = true;
    if (give_up_now) return QueueWait::Result::not_acquired;
    const auto started = waits_[i]->start(session_, deadline, mode_);
    if (!started) return std::nullopt;  // it waits: poll() goes on
    if (const auto decided = on_queue_result(i, *started)) return decided;
  }
  if (confirm_pending_) {
    if (!confirm_all(deadline)) {
      lose_entries("an entry was gone once every queue had admitted it");
      return QueueWait::Result::entry_lost;
    }
    confirm_pending_ = false;
  }
  return QueueWait::Result::acquired;
}

std::optional<QueueWait::Result> MultiAcquisition::on_queue_result(std::size_t index, QueueWait::Result result) {
  switch (result) {
    case QueueWait::Result::acquired:
      admitted_[index] = true;
      return std::nullopt;
    case QueueWait::Result::entry_lost:
      lose_entries("queue entry of " + quote_value(queues_[index].name) + " lost while waiting");
      return QueueWait::Result::entry_lost;
    case QueueWait::Result::not_acquired:
      break;
  }
  return QueueWait::Result::not_acquired;
}

void MultiAcquisition::give_up(const Session* /*session*/) noexcept { remove_entries(); }

void MultiAcquisition::begin(const Session& session) {
  // The entries of an earlier lease: that lease was lost here, but may live
  // on in etcd a while, and a create in doubt may still land.
  if (lease_id_ != 0 && (revision_ != 0 || create_sent_ || in_doubt_)) {
    for (const auto& key : keys_) context_->strays().retire(key, lease_id_);
  }
  lease_id_ = session.lease_id();
  keys_.clear();
  for (std::size_t i = 0; i < queues_.size(); ++i) {
    auto key = queue_key(queues_[i].dir.dir, lease_id_);
    // A retired key may still get an entry that a late create makes.
    if (context_->strays().retired(key)) key += context_->unique_key_suffix();
    waits_[i]->expect_at(session, key);
    keys_.push_back(std::move(key));
  }
  admitted_.assign(queues_.size(), false);
  confirm_pending_ = false;
  revision_ = 0;
  create_sent_ = false;
  in_doubt_ = false;
}

bool MultiAcquisition::enqueue(const Session& session, SteadyTime deadline) {
  // Past the caller's deadline nothing is sent: it could only be removed.
  if (SteadyClock::now() >= deadline) throw etcd::NotSent("the caller's deadline had passed");
  const bool created_by_us = create_sent_ || in_doubt_;
  create_sent_ = true;
  // Each queue's wait registers it for close()'s notes while the create is
  // unanswered; it creates nothing itself here (QueueWait::create_sending).
  for (const auto& wait : waits_) wait->create_sending();
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (context_->closed()) throw context_->closed_error();
  pb::TxnResponse response;
  try {
    std::vector<QueueDir> dirs;
    for (const auto& queue : queues_) dirs.push_back(queue.dir);
    const auto exclusive = Admission::exclusive();
    // With the values of the entries ahead: a waiter behind an entry that
    // leaves a note watches it later (QueueWait::kPredecessorWatchDelay).
    const AheadRead ahead{exclusive.first_read_limit(), true};
    std::vector<std::string> names;
    for (const auto& queue : queues_) names.push_back(queue.name);
    // Given command_timeout to be answered whatever the caller's deadline, as
    // a single queue's create (QueueWait::send_create).
    response = context_->client().queue_write(
        multi_enqueue_txn(dirs, keys_, context_->multi_entry_value(std::move(names)), lease_id_, ahead),
        etcd::write_site::multi_enqueue, deadline);
  } catch (const Error& error) {
    // No reply: etcd may apply it now, or much later; the keys are retired
    // when the attempt ends without them.
    if (error.value() == errc::unavailable) in_doubt_ = true;
    throw;
  }
  std::int64_t revision = response.header().revision();
  bool ours = response.succeeded();
  if (!ours) {
    // A retry of ours that was applied shows every key, on our lease, with
    // one create revision; anything else is not this attempt's to take.
    revision = 0;
    ours = created_by_us;
    for (std::size_t i = 0; i < keys_.size() && ours; ++i) {
      const auto& found = response.responses(static_cast<int>(i)).response_range();
      if (found.kvs_size() == 0 || found.kvs(0).lease() != lease_id_)
        ours = false;
      else if (revision == 0)
        revision = found.kvs(0).create_revision();
      else if (found.kvs(0).create_revision() != revision)
        ours = false;
    }
  }
  if (ours) {
    revision_ = revision;
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      // The create's read of each queue: admitted there at once, or what to
      // wait for, without another read. A retry's failure branch read none.
      const auto* newest =
          response.succeeded() ? &response.responses(static_cast<int>(keys_.size() + i)).response_range() : nullptr;
      admitted_[i] = waits_[i]->adopt_created(revision_, in_doubt_, newest);
    }
    return true;
  }
  context_->log()(LogLevel::warning, "a queue key this attempt did not create was found under its name; taking others",
                  {{"name", queues_.front().name}, {"key", keys_.front()}});
  for (std::size_t i = 0; i < keys_.size(); ++i) {
    const auto& found = response.responses(static_cast<int>(i)).response_range();
    const bool on_our_lease = found.kvs_size() > 0 && found.kvs(0).lease() == lease_id_;
    if (on_our_lease || in_doubt_) context_->strays().retire(keys_[i], lease_id_);
    keys_[i] = queue_key(queues_[i].dir.dir, lease_id_) + context_->unique_key_suffix();
    waits_[i]->expect_at(session, keys_[i]);
  }
  create_sent_ = false;
  in_doubt_ = false;
  return false;
}

bool MultiAcquisition::confirm_all(SteadyTime deadline) const {
  return context_->client()
      .txn(while_all_created_at(entries()), context_->client().request_deadline(deadline))
      .succeeded();
}

std::vector<QueueEntry> MultiAcquisition::entries() const {
  std::vector<QueueEntry> own;
  for (const auto& key : keys_) own.push_back({key, revision_});
  return own;
}

TryOutcome MultiAcquisition::lose_entries(const std::string& why) {
  context_->log()(LogLevel::info, why + "; queueing again", {{"name", queues_.front().name}, {"key", keys_.front()}});
  remove_entries();
  return TryOutcome::again;
}

void MultiAcquisition::remove_entries() noexcept {
  if (lease_id_ != 0 && (revision_ != 0 || create_sent_ || in_doubt_)) {
    // A create in doubt stays so: it could still land on these keys.
    const bool unknown = revision_ == 0;
    for (const auto& key : keys_) remove_entry(*context_, Leftover{{key, revision_}, in_doubt_ || unknown}, lease_id_);
  }
  // The next try chooses its keys again (retired ones are not reused).
  lease_id_ = 0;
  revision_ = 0;
  create_sent_ = false;
  in_doubt_ = false;
}

}  // namespace etcdlock::detail
