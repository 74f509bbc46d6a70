#include "observe/activity_watch.h"

#include <set>

#include "keys/holder_value.h"
#include "keys/key_layout.h"
#include "keys/names.h"
#include "observe/catch_up.h"
#include "queue/admission.h"

namespace etcdlock::detail {
namespace {

constexpr std::size_t kRememberedLeases = 1024;

}  // namespace

// What the queued calls need; they may outlive the watch. Two stages, each in
// order: `lookups_` asks etcd whether the lease of an entry that went has
// ended, as soon as the change is seen, and passes the event on to `calls`,
// which calls the listener. A slow listener then delays only its own calls,
// not the lookups: asked late, etcd would call a lease that its manager ended
// after an unlock the reason for that unlock.
struct ActivityWatch::Delivery {
  Delivery(std::shared_ptr<PrimitiveContext> context, LockListener listener)
      : context(std::move(context)), listener(std::move(listener)), calls(this->context->notifier()) {}

  // Asks etcd whether `lease` has ended; false when it cannot tell. Called on
  // the lookup strand only.
  bool lease_ended(std::int64_t lease) {
    if (lease == 0) return false;
    if (ended_leases.contains(lease)) return true;
    try {
      const auto& client = context->client();
      if (client.lease_time_to_live(lease, client.command_deadline()).ttl() >= 0) return false;
    } catch (const Error&) {
      return false;
    }
    // A lease never comes back once ended; the set only saves lookups of a
    // lease with several entries, so it is kept small.
    if (ended_leases.size() >= kRememberedLeases) ended_leases.clear();
    ended_leases.insert(lease);
    return true;
  }

  const std::shared_ptr<PrimitiveContext> context;
  const LockListener listener;
  std::set<std::int64_t> ended_leases;
  Strand calls;
};

// Forwards the watch's callbacks while the watch lives.
class ActivityWatch::Relay final : public etcd::WatchListener {
 public:
  explicit Relay(std::weak_ptr<ActivityWatch> watch) : watch_(std::move(watch)) {}
  void on_events(std::span<const etcd::WatchEvent> events) override {
    if (const auto watch = watch_.lock()) watch->on_events(events);
  }
  void on_gap() override {
    if (const auto watch = watch_.lock()) watch->on_gap();
  }
  void on_failed(const std::string& reason) override {
    if (const auto watch = watch_.lock()) {
      watch->context_->log()(LogLevel::error, "etcd refused to watch the locks; watching stopped",
                             {{"key", watch->from_}, {"reason", reason}});
    }
  }

 private:
  std::weak_ptr<ActivityWatch> watch_;
};

ActivityWatch::ActivityWatch(std::shared_ptr<PrimitiveContext> context, std::string_view name_prefix,
                             LockListener listener)
    : context_(std::move(context)),
      name_prefix_(name_prefix),
      from_(context_->prefix() + "/" + name_prefix_),
      end_(prefix_range_end(from_)),
      delivery_(std::make_shared<Delivery>(context_, std::move(listener))),
      lookups_(context_->notifier()) {
  validate_name_prefix(name_prefix);
}

ActivityWatch::~ActivityWatch() { stop(); }

void ActivityWatch::start() {
  read();
  MutexLock lock(mu_);
  if (stopped_) return;
  watch_ =
      context_->watches().add(from_, end_, catch_up_.read_revision() + 1, std::make_shared<Relay>(weak_from_this()));
}

std::optional<std::string_view> ActivityWatch::name_of(std::string_view key) const {
  // The range of "jobs/" also holds the keys of the lock "jobs" itself
  // ("<prefix>/jobs/<id>"): not one of the names watched.
  const auto name = lock_name_of(context_->prefix(), key);
  if (!name || !name->starts_with(name_prefix_)) return std::nullopt;
  return name;
}

void ActivityWatch::read() {
  pb::RangeRequest range;
  range.set_key(from_);
  range.set_range_end(end_);
  range.set_sort_target(pb::RangeRequest::CREATE);
  range.set_sort_order(pb::RangeRequest::ASCEND);
  const auto response = context_->client().range(range, context_->client().command_deadline());
  const std::int64_t revision = response.header().revision();
  std::map<std::string, Queue> now;
  for (const auto& kv : response.kvs()) {
    if (const auto name = name_of(kv.key())) {
      now[std::string(*name)].emplace(kv.create_revision(),
                                      Entry{kv.key(), kv.value(), kv.lease(), kv.create_revision(), false});
    }
  }
  bool run = false;
  bool again = false;
  {
    MutexLock lock(mu_);
    if (!read_once_) {
      // The state the watch starts from: nothing to report.
      for (const auto& [name, queue] : now) {
        for (const auto& [created, entry] : queue) entries_[entry.key] = {name, created};
      }
      queues_ = std::move(now);
      for (const auto& [name, queue] : queues_) admit(name, revision, /*report_changes=*/false);
      read_once_ = true;
    } else {
      run |= report_difference(std::move(now), revision);
    }
    for (const auto& event : catch_up_.read_done(revision, again)) run |= apply(event);
    again = again && !stopped_;
  }
  if (run) lookups_.run_queued();
  if (again) read_later();
}

bool ActivityWatch::report_difference(std::map<std::string, Queue> now, std::int64_t revision) {
  // First every entry that went, then every value that changed (a downgrade,
  // a proclamation), then who holds now, then the entries that came: so an
  // entry that went meanwhile is never seen to hold on its way out.
  bool run = false;
  std::set<std::string> changed;
  std::vector<std::string> gone;
  for (const auto& [key, place] : entries_) {
    const auto queue = now.find(place.first);
    if (queue == now.end() || !queue->second.contains(place.second)) gone.push_back(key);
  }
  for (const auto& key : gone) {
    if (auto name = drop(key, revision, run)) changed.insert(std::move(*name));
  }
  std::vector<std::pair<std::string, std::int64_t>> added;
  for (auto& [name, queue] : now) {
    for (auto& [created, entry] : queue) {
      auto& known = queues_[name];
      if (const auto place = known.find(created); place != known.end() && entries_.contains(entry.key)) {
        if (place->second.value != entry.value) {
          place->second.value = std::move(entry.value);
          changed.insert(name);
        }
        continue;
      }
      entries_[entry.key] = {name, created};
      known.emplace(created, std::move(entry));
      added.emplace_back(name, created);
      changed.insert(name);
    }
  }
  // A change in "a/b" may admit an entry of "a" (see admit()).
  std::set<std::string> enclosing;
  for (const auto& name : changed) {
    for (auto slash = name.find('/'); slash != std::string::npos; slash = name.find('/', slash + 1)) {
      enclosing.insert(name.substr(0, slash));
    }
  }
  changed.merge(enclosing);
  for (const auto& name : changed) {
    const auto queue = queues_.find(name);
    if (queue == queues_.end()) continue;
    if (queue->second.empty()) {
      queues_.erase(queue);
    } else {
      run |= admit(name, revision);
    }
  }
  for (const auto& [name, created] : added) {
    const auto& entry = queues_.at(name).at(created);
    if (!entry.holds) run |= report(LockEvent::Kind::queued, name, entry, revision);
  }
  return run;
}

void ActivityWatch::on_events(std::span<const etcd::WatchEvent> events) {
  bool run = false;
  {
    MutexLock lock(mu_);
    if (!catch_up_.take(events)) return;
    for (const auto& event : events) run |= apply(event);
  }
  if (run) lookups_.run_queued();
}

void ActivityWatch::on_gap() {
  {
    MutexLock lock(mu_);
    if (stopped_ || !catch_up_.gap()) return;
  }
  read_later();
}

void ActivityWatch::read_later() {
  read_on_worker(context_->worker(), [weak = weak_from_this()] {
    if (const auto watch = weak.lock()) watch->read();
  });
}

bool ActivityWatch::apply(const etcd::WatchEvent& event) {
  if (catch_up_.in_last_read(event)) return false;
  if (event.deleted) return remove(event.key, event.mod_revision);
  const auto name = name_of(event.key);
  if (!name) return false;
  return put(std::string(*name), Entry{event.key, event.value, event.lease, event.create_revision, false},
             event.mod_revision);
}

bool ActivityWatch::put(const std::string& name, Entry entry, std::int64_t revision) {
  auto& queue = queues_[name];
  const auto known = entries_.find(entry.key);
  if (known != entries_.end()) {
    // A new value for an entry (an election's proclamation, a downgrade):
    // it may admit others.
    const auto place = queue.find(known->second.second);
    if (place != queue.end()) place->second.value = std::move(entry.value);
    const bool run = admit(name, revision);
    return admit_enclosing(name, revision) || run;
  }
  const auto created = entry.revision;
  const std::string key = entry.key;
  entries_[key] = {name, created};
  queue.emplace(created, std::move(entry));
  bool run = admit(name, revision);
  run |= admit_enclosing(name, revision);
  const auto& added = queue.at(created);
  if (!added.holds) run |= report(LockEvent::Kind::queued, name, added, revision);
  return run;
}

std::optional<std::string> ActivityWatch::drop(const std::string& key, std::int64_t revision, bool& run) {
  const auto known = entries_.find(key);
  if (known == entries_.end()) return std::nullopt;
  const auto [name, created] = known->second;
  entries_.erase(known);
  const auto queue = queues_.find(name);
  if (queue == queues_.end()) return std::nullopt;
  const auto entry = queue->second.find(created);
  if (entry == queue->second.end()) return std::nullopt;
  run |= report(entry->second.holds ? LockEvent::Kind::released : LockEvent::Kind::left, name, entry->second, revision);
  queue->second.erase(entry);
  return name;
}

bool ActivityWatch::remove(const std::string& key, std::int64_t revision) {
  bool run = false;
  const auto name = drop(key, revision, run);
  if (!name) return run;
  if (const auto queue = queues_.find(*name); queue->second.empty()) {
    queues_.erase(queue);
  } else {
    run |= admit(*name, revision);
  }
  return admit_enclosing(*name, revision) || run;
}

bool ActivityWatch::admit(const std::string& name, std::int64_t revision, bool report_changes) {
  // The queue holds the entries of longer names too ("a/b" under "a"), as in
  // etcd's recipe (see keys/key_layout.h): the older ones hold ours back.
  struct Place {
    const std::string* value;
    Entry* own;  // nullptr for a longer name's entry
  };
  // By create revision, then key: one Txn may create keys of several names.
  std::map<std::pair<std::int64_t, std::string_view>, Place> order;
  for (auto& [created, entry] : queues_.at(name))
    order.emplace(std::pair{created, entry.key}, Place{&entry.value, &entry});
  const std::string dir = name + "/";
  for (auto longer = queues_.lower_bound(dir); longer != queues_.end() && longer->first.starts_with(dir); ++longer) {
    for (const auto& [created, entry] : longer->second) {
      order.emplace(std::pair{created, entry.key}, Place{&entry.value, nullptr});
    }
  }
  std::vector<const std::string*> values;
  values.reserve(order.size());
  for (const auto& [at, place] : order) values.push_back(place.value);
  const auto holds = holding_entries(values);
  bool run = false;
  std::size_t i = 0;
  for (const auto& [at, place] : order) {
    const bool began = holds[i++] && place.own && !place.own->holds;
    if (!began) continue;
    place.own->holds = true;  // a holder holds until it goes
    if (report_changes) run |= report(LockEvent::Kind::acquired, name, *place.own, revision);
  }
  return run;
}

bool ActivityWatch::admit_enclosing(const std::string& name, std::int64_t revision) {
  bool run = false;
  for (auto slash = name.find('/'); slash != std::string::npos; slash = name.find('/', slash + 1)) {
    const auto enclosing = name.substr(0, slash);
    if (queues_.contains(enclosing)) run |= admit(enclosing, revision);
  }
  return run;
}

bool ActivityWatch::report(LockEvent::Kind kind, const std::string& name, const Entry& entry, std::int64_t revision) {
  if (stopped_) return false;
  LockEvent event{kind, name, describe_entry(entry.key, entry.value, entry.lease, entry.revision, entry.holds),
                  revision, false};
  const bool gone = kind == LockEvent::Kind::released || kind == LockEvent::Kind::left;
  return lookups_.queue([delivery = delivery_, event = std::move(event), gone]() mutable {
    if (gone) event.lease_ended = delivery->lease_ended(event.entry.lease_id);
    // The listener's call holds the Delivery only weakly: a queued call must
    // not keep alive the strand that holds it.
    const bool start = delivery->calls.queue([weak = std::weak_ptr<Delivery>(delivery), event = std::move(event)] {
      if (const auto delivery = weak.lock()) delivery->listener(event);
    });
    if (start) delivery->calls.run_queued();
  });
}

void ActivityWatch::stop() noexcept {
  std::int64_t watch = 0;
  {
    MutexLock lock(mu_);
    stopped_ = true;
    watch = std::exchange(watch_, 0);
  }
  // Lookups first: a lookup under way may still pass an event on, which
  // the listener's strand then drops.
  lookups_.stop();
  delivery_->calls.stop();
  if (watch != 0) context_->watches().remove(watch);
}

}  // namespace etcdlock::detail
