#include "hand_over.h"

#include <charconv>
#include "mutex.h"

namespace etcdlock::detail {

std::string encode_note(const QueueEntry& entry) { return std::to_string(entry.revision) + " " + entry.key; }

std::optional<QueueEntry> decode_note(std::string_view text) {
  QueueEntry entry;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), entry.revision);
  if (error != std::errc() || end == text.data() + text.size() || *end != ' ' || entry.revision <= 0) {
    return std::nullopt;
  }
  entry.key = std::string(end + 1, text.data() + text.size());
  return entry;
}

// Forwards the inbox watch's callbacks while the inbox lives.
class HandOverInbox::Listener final : public etcd::WatchListener {
 public:
  explicit Listener(HandOverInbox& inbox) : inbox_(inbox) {}
  void on_created(std::int64_t) override { inbox_.on_opened(true); }
  void on_events(std::span<const etcd::WatchEvent> events) override { inbox_.on_notes(events); }
  void on_gap() override { inbox_.on_missed(); }
  void on_failed(const std::string& reason) override {
    inbox_.log_(LogLevel::warning, "the hand-over inbox's watch was refused; waiters rely on their predecessors",
                {{"reason", reason}});
    inbox_.on_opened(false);
    inbox_.on_missed();
  }

 private:
  HandOverInbox& inbox_;
};

HandOverInbox::HandOverInbox(etcd::WatchHub& watches, const Logger& log, std::string key)
    : watches_(watches), log_(log), key_(std::move(key)) {}

HandOverInbox::~HandOverInbox() {
  std::int64_t watch = 0;
  {
    MutexLock lock(mu_);
    watch = watch_;
  }
  if (watch != 0) watches_.remove(watch);
}

bool HandOverInbox::open(SteadyTime deadline) {
  const auto watch = watches_.add(key_, "", 0, std::make_shared<Listener>(*this), etcd::WatchHub::Events::puts_only);
  MutexLock lock(mu_);
  watch_ = watch;
  opened_.wait_until(lock, deadline, [&]() ETCDLOCK_REQUIRES(mu_) { return open_.has_value(); });
  if (!open_) open_ = false;  // too late: notes that arrive later are still delivered, but not relied on
  return *open_;
}

std::string HandOverInbox::address() const {
  MutexLock lock(mu_);
  return open_.value_or(false) ? key_ : std::string();
}

void HandOverInbox::on_opened(bool in_place) {
  {
    MutexLock lock(mu_);
    if (!open_) open_ = in_place;
  }
  opened_.notify_all();
}

void HandOverInbox::expect(const std::string& entry_key, HandOverReceiver& receiver) {
  MutexLock lock(mu_);
  expected_[entry_key] = &receiver;
}

void HandOverInbox::forget(const std::string& entry_key) {
  MutexLock lock(mu_);
  expected_.erase(entry_key);
}

void HandOverInbox::on_notes(std::span<const etcd::WatchEvent> events) {
  MutexLock lock(mu_);
  for (const auto& event : events) {
    const auto note = decode_note(event.value);
    if (!note) continue;
    if (const auto found = expected_.find(note->key); found != expected_.end()) {
      found->second->on_note(note->revision, event.mod_revision);
    }
  }
}

void HandOverInbox::on_missed() {
  MutexLock lock(mu_);
  for (auto& [key, receiver] : expected_) receiver->on_notes_missed();
}

}  // namespace etcdlock::detail
