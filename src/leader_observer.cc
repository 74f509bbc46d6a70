#include "leader_observer.h"

#include "key_layout.h"

namespace etcdlock::detail {
namespace {

constexpr auto kReadRetryPause = std::chrono::milliseconds(200);

}  // namespace

// Forwards the watch's callbacks while the observer lives.
class LeaderObserver::Relay final : public etcd::WatchListener {
 public:
  explicit Relay(std::weak_ptr<LeaderObserver> observer) : observer_(std::move(observer)) {}
  void on_events(std::span<const etcd::WatchEvent> events) override {
    if (const auto observer = observer_.lock()) observer->on_events(events);
  }
  void on_gap() override {
    if (const auto observer = observer_.lock()) observer->on_gap();
  }
  void on_failed(const std::string& reason) override {
    if (const auto observer = observer_.lock()) {
      observer->context_->log()(LogLevel::error, "etcd refused to watch an election; observing stopped",
                                {{"key", observer->queue_.dir}, {"reason", reason}});
    }
  }

 private:
  std::weak_ptr<LeaderObserver> observer_;
};

LeaderObserver::LeaderObserver(std::shared_ptr<LockContext> context, QueueDir queue, Callback on_change)
    : context_(std::move(context)),
      queue_(std::move(queue)),
      on_change_(std::make_shared<const Callback>(std::move(on_change))),
      strand_(context_->notifier()) {}

LeaderObserver::~LeaderObserver() { stop(); }

void LeaderObserver::start() {
  {
    MutexLock lock(mu_);
    reading_ = true;
  }
  read();
  MutexLock lock(mu_);
  watch_ = context_->watches().add(queue_.dir, queue_.end, read_revision_ + 1, std::make_shared<Relay>(weak_from_this()));
}

void LeaderObserver::read() {
  auto range = queue_range(queue_);
  range.set_keys_only(false);
  const auto response = context_->client().range(range, context_->client().command_deadline());
  std::map<std::string, LeaderInfo> entries;
  for (const auto& kv : response.kvs()) {
    if (is_queue_entry(queue_.dir, kv.key())) {
      entries[kv.key()] = LeaderInfo{kv.key(), kv.value(), kv.lease(), kv.create_revision()};
    }
  }
  bool deliver = false;
  bool again = false;
  {
    MutexLock lock(mu_);
    entries_ = std::move(entries);
    read_revision_ = response.header().revision();
    for (const auto& event : std::exchange(held_back_, {})) apply(event);
    deliver = publish();
    // A gap reported while this read was under way may lie past it.
    again = std::exchange(read_again_, false) && !stopped_;
    reading_ = again;
  }
  if (deliver) strand_.run_queued();
  if (again) read_later(SteadyClock::now());
}

void LeaderObserver::on_events(std::span<const etcd::WatchEvent> events) {
  bool deliver = false;
  {
    MutexLock lock(mu_);
    if (reading_) {
      held_back_.insert(held_back_.end(), events.begin(), events.end());
      return;
    }
    for (const auto& event : events) apply(event);
    deliver = publish();
  }
  if (deliver) strand_.run_queued();
}

void LeaderObserver::on_gap() {
  {
    MutexLock lock(mu_);
    if (stopped_) return;
    if (reading_) {
      read_again_ = true;  // the read under way may have been answered before this gap
      return;
    }
    reading_ = true;
  }
  read_later(SteadyClock::now());
}

void LeaderObserver::read_later(SteadyTime when) {
  // The read may block: on the worker, not the hub's thread; retried until
  // etcd answers.
  context_->worker().post_at(when, [weak = weak_from_this()] {
    const auto observer = weak.lock();
    if (!observer) return;
    try {
      observer->read();
    } catch (const Error&) {
      observer->read_later(SteadyClock::now() + kReadRetryPause);
    }
  });
}

void LeaderObserver::apply(const etcd::WatchEvent& event) {
  // Events up to the last read are in it. (Several events may share one
  // revision: a Txn's, or a range delete's; each is applied.)
  if (event.mod_revision <= read_revision_) return;
  if (!is_queue_entry(queue_.dir, event.key)) return;
  if (event.deleted) {
    entries_.erase(event.key);
  } else {
    entries_[event.key] = LeaderInfo{event.key, event.value, event.lease, event.create_revision};
  }
}

bool LeaderObserver::publish() {
  if (stopped_) return false;
  std::optional<LeaderInfo> leader;
  for (const auto& [key, entry] : entries_) {
    if (!leader || entry.revision < leader->revision) leader = entry;
  }
  if (published_ && *published_ == leader) return false;
  published_ = leader;
  return strand_.queue([on_change = on_change_, leader = std::move(leader)] { (*on_change)(leader); });
}

void LeaderObserver::stop() noexcept {
  std::int64_t watch = 0;
  {
    MutexLock lock(mu_);
    stopped_ = true;
    watch = std::exchange(watch_, 0);
  }
  strand_.stop();
  if (watch != 0) context_->watches().remove(watch);
}

}  // namespace etcdlock::detail
