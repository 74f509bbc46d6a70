#include "queue/primitive_context.h"

#include <unistd.h>

#include <cstdio>
#include <random>

#include "base/mutex.h"
#include "base/text.h"
#include "etcdlock/version.h"
#include "keys/key_layout.h"
#include "queue/hand_over.h"

namespace etcdlock::detail {
namespace {

std::uint64_t random_manager_id() {
  std::random_device entropy;
  return (static_cast<std::uint64_t>(entropy()) << 32) ^ entropy();
}

std::string closed_message(const std::string& prefix) {
  return "the lock manager for prefix " + quote_value(prefix) + " is closed";
}

}  // namespace

PrimitiveContext::PrimitiveContext(const ManagerOptions& options)
    : prefix_(options.prefix),
      owner_(options.owner),
      hostname_(this_hostname()),
      log_(options.log_sink),
      lock_counters_(options.metrics, options.metrics_names),
      client_(options.endpoints, options.command_timeout,
              etcd::Client::Credentials{options.tls, options.username, options.password}, log_),
      watches_(client_, log_),
      session_events_(notifier_),
      sessions_(client_, log_, options.ttl, closed_message(options.prefix), session_counters_, session_events_),
      strays_(client_, watches_, log_, sessions_, worker_),
      inbox_(watches_, client_, worker_, log_, inbox_key(options.prefix, random_manager_id())) {}

PrimitiveContext::~PrimitiveContext() {
  shut_down();
  notifier_.stop();
}

void PrimitiveContext::connect(SteadyTime deadline) {
  if (!client_.wait_connected(deadline)) {
    throw Error(errc::unavailable, "no etcd member accepted a connection in time; endpoints " + client_.endpoints());
  }
  sessions_.current(deadline);
  inbox_.open(deadline);
}

void PrimitiveContext::check_open() const {
  if (closed()) throw closed_error();
}

Error PrimitiveContext::closed_error() const { return Error(errc::closed, closed_message(prefix_)); }

std::string PrimitiveContext::entry_value(HolderValue::Side side, std::int64_t limit, bool with_inbox) const {
  return encode_holder_value({owner_, hostname_, static_cast<long>(getpid()), std::chrono::system_clock::now(),
                              kVersion, with_inbox ? inbox_.address() : std::string(), side, limit});
}

std::string PrimitiveContext::multi_entry_value(std::vector<std::string> names) const {
  HolderValue value{owner_,   hostname_,       static_cast<long>(getpid()), std::chrono::system_clock::now(),
                    kVersion, inbox_.address()};
  // Every entry of the set carries the names, and one Txn puts them all: the
  // request grows with the square of the set, so long sets name nothing.
  std::size_t bytes = 0;
  for (const auto& name : names) bytes += name.size();
  if (bytes <= kMaxSetNamesInValue) value.names = std::move(names);
  return encode_holder_value(value);
}

std::string PrimitiveContext::unique_key_suffix() {
  char suffix[24];
  std::snprintf(suffix, sizeof suffix, "-%llx",
                static_cast<unsigned long long>(next_key_suffix_.fetch_add(1, std::memory_order_relaxed)));
  return suffix;
}

Worker& PrimitiveContext::lazy_worker(std::unique_ptr<Worker>& worker, std::string_view role, std::size_t max_threads) {
  if (!worker) {
    worker = std::make_unique<Worker>(role, max_threads);
    // Asked for after shut_down() stopped the steps (or was about to): no
    // thread stays for a closed manager; posts are dropped, as after stop().
    if (closed()) worker->stop();
  }
  return *worker;
}

Worker& PrimitiveContext::steps() {
  MutexLock lock(steps_mu_);
  return lazy_worker(steps_, "steps", kStepThreads);
}

Worker& PrimitiveContext::step_deadlines() {
  MutexLock lock(steps_mu_);
  return lazy_worker(step_deadlines_, "deadline", 1);
}

void PrimitiveContext::hand_over_queue_on_close(std::string dir, std::int64_t revision) {
  MutexLock lock(close_notes_mu_);
  if (close_notes_taken_) return;
  const auto [at, added] = close_note_queues_.try_emplace(std::move(dir), revision);
  if (!added) at->second = std::min(at->second, revision);
}

void PrimitiveContext::hand_over_queue_on_close_unanswered(std::string dir, std::string key) {
  MutexLock lock(close_notes_mu_);
  if (close_notes_taken_ || close_unanswered_taken_) return;
  close_unanswered_creates_.emplace_back(std::move(dir), std::move(key));
}

void PrimitiveContext::settle_unanswered_creates(SteadyTime deadline) noexcept {
  std::vector<std::pair<std::string, std::string>> creates;  // queue, key
  {
    MutexLock lock(close_notes_mu_);
    creates.swap(close_unanswered_creates_);
    close_unanswered_taken_ = true;  // one registered later would never be read
  }
  for (std::size_t first = 0; first < creates.size(); first += kMaxTxnOps) {
    const std::size_t count = std::min(kMaxTxnOps, creates.size() - first);
    pb::TxnRequest reads;  // no compares: the success branch, every read in one revision
    for (std::size_t i = 0; i < count; ++i) {
      auto* read = reads.add_success()->mutable_request_range();
      read->set_key(creates[first + i].second);
      read->set_keys_only(true);
    }
    try {
      const auto found = client_.txn(reads, deadline);
      for (std::size_t i = 0; i < count && static_cast<int>(i) < found.responses_size(); ++i) {
        const auto& range = found.responses(static_cast<int>(i)).response_range();
        // Absent: the create has not landed, and the revoke ends it if it
        // does. Only one that lands in between could have an entry behind
        // it, whose waiter then learns from its own watch.
        if (range.kvs_size() > 0 && range.kvs(0).create_revision() > 0) {
          hand_over_queue_on_close(creates[first + i].first, range.kvs(0).create_revision());
        }
      }
    } catch (const std::exception&) {
      // Not known: the head of each queue gets a note, whatever its place.
      for (std::size_t i = 0; i < count; ++i) hand_over_queue_on_close(creates[first + i].first, 0);
    }
  }
}

void PrimitiveContext::note_successors_after_revoke(const Session::Ended& ended, SteadyTime deadline) noexcept {
  std::map<std::string, std::int64_t> dirs;
  {
    MutexLock lock(close_notes_mu_);
    close_notes_taken_ = true;
    dirs.swap(close_note_queues_);
  }
  // Unrevoked (no reply), our entries may still stand: nobody is next yet.
  if (!ended.lease_gone) return;
  std::vector<VacatedQueue> queues;
  queues.reserve(dirs.size());
  for (const auto& [dir, revision] : dirs) queues.push_back({{dir}, revision});
  // One deadline for all: a member that stopped answering delays close() by
  // one command timeout, not one per lock held.
  note_new_heads_after_revoke(client_, queues, ended.revoke_revision, inbox_.address(), deadline);
}

void PrimitiveContext::shut_down() noexcept {
  if (!closed_.request_stop()) {
    if (notifier_.on_notifier_thread()) return;
    MutexLock lock(shut_down_mu_);
    shut_down_done_.wait(lock, [&]() ETCDLOCK_REQUIRES(shut_down_mu_) { return shut_down_; });
    return;
  }
  // Revoking the lease deletes every entry of this manager at once: holds,
  // places in queues, and entries whose delete is still pending.
  const auto deadline = client_.command_deadline();
  // Retired entries of ours (a create or delete whose reply was lost) go
  // with the lease too, and a waiter may be behind one. One that was ours at
  // a known revision (a release or removal whose answer was lost) has its
  // successor told after the revoke, whether the entry is gone already or
  // goes with the lease: its guard, stopped below, may not have told it yet.
  // One whose revision is not known is read like an unanswered create.
  for (auto& [key, ours] : strays_.keys_and_ours()) {
    if (ours != 0) {
      hand_over_queue_on_close(queue_dir_of_entry(key), ours);
    } else {
      hand_over_queue_on_close_unanswered(queue_dir_of_entry(key), std::move(key));
    }
  }
  // The read of unanswered creates gets half the time at most: with etcd's
  // replies held up, a read that took it all left the revoke none, and every
  // entry of ours to the lease's TTL (an adversarial review found that).
  settle_unanswered_creates(SteadyClock::now() + (deadline - SteadyClock::now()) / 2);
  note_successors_after_revoke(sessions_.end(deadline), deadline);
  strays_.close();
  Worker* steps = nullptr;
  Worker* step_deadlines = nullptr;
  {
    MutexLock lock(steps_mu_);
    steps = steps_.get();
    step_deadlines = step_deadlines_.get();
  }
  // Not under steps_mu_: a step under way may ask for steps().
  if (steps) steps->stop();
  if (step_deadlines) step_deadlines->stop();
  worker_.stop();
  watches_.close();
  // Replies still to come call back into what goes with this context.
  client_.drain_async();
  notifier_.drain();
  {
    MutexLock lock(shut_down_mu_);
    shut_down_ = true;
  }
  shut_down_done_.notify_all();
}

}  // namespace etcdlock::detail
