#include "observe/leader_observer.h"

#include "keys/key_layout.h"
#include "observe/catch_up.h"

namespace etcdlock::detail {

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

LeaderObserver::LeaderObserver(std::shared_ptr<PrimitiveContext> context, QueueDir queue, Callback on_change)
    : context_(std::move(context)),
      queue_(std::move(queue)),
      on_change_(std::make_shared<const Callback>(std::move(on_change))),
      strand_(context_->notifier()) {}

LeaderObserver::~LeaderObserver() { stop(); }

void LeaderObserver::start() {
  read();
  MutexLock lock(mu_);
  watch_ = context_->watches().add(queue_.dir, queue_.end(), catch_up_.read_revision() + 1,
                                   std::make_shared<Relay>(weak_from_this()));
}

void LeaderObserver::read() {
  auto range = queue_range(queue_);
  range.set_keys_only(false);
  const auto response = context_->client().range(range, context_->client().command_deadline());
  std::map<std::string, LeaderInfo> entries;
  // Every key under the directory is an entry, also one of a longer name
  // ("e/0" under "e"), as Go's Election sees it; an inbox key is none (see
  // keys/key_layout.h).
  for (const auto& kv : response.kvs()) {
    if (is_inbox_key(kv.key())) continue;
    entries[kv.key()] = LeaderInfo{kv.key(), kv.value(), kv.lease(), kv.create_revision()};
  }
  bool deliver = false;
  bool again = false;
  {
    MutexLock lock(mu_);
    entries_ = std::move(entries);
    for (const auto& event : catch_up_.read_done(response.header().revision(), again)) apply(event);
    deliver = publish();
    again = again && !stopped_;
  }
  if (deliver) strand_.run_queued();
  if (again) read_later();
}

void LeaderObserver::on_events(std::span<const etcd::WatchEvent> events) {
  bool deliver = false;
  {
    MutexLock lock(mu_);
    if (!catch_up_.take(events)) return;
    for (const auto& event : events) apply(event);
    deliver = publish();
  }
  if (deliver) strand_.run_queued();
}

void LeaderObserver::on_gap() {
  {
    MutexLock lock(mu_);
    if (stopped_ || !catch_up_.gap()) return;
  }
  read_later();
}

void LeaderObserver::read_later() {
  read_on_worker(context_->worker(), [weak = weak_from_this()] {
    if (const auto observer = weak.lock()) observer->read();
  });
}

void LeaderObserver::apply(const etcd::WatchEvent& event) {
  // Events up to the last read are in it. (Several events may share one
  // revision: a Txn's, or a range delete's; each is applied.)
  if (catch_up_.in_last_read(event) || is_inbox_key(event.key)) return;
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
