#include "queue/hand_over.h"

#include <algorithm>
#include <charconv>

#include "etcd/lost_replies.h"
#include "keys/holder_value.h"
#include "keys/key_layout.h"

namespace etcdlock::detail {
namespace {

// An entry that can receive a note: a queue entry whose value names an inbox
// under a prefix that contains the queue.
struct Addressee {
  QueueEntry entry;
  std::string inbox;
  std::int64_t lease = 0;
};

std::optional<Addressee> addressee(const QueueDir& queue, const mvccpb::KeyValue& kv) {
  if (!is_queue_entry(queue.dir, kv.key())) return std::nullopt;
  const auto value = decode_holder_value(kv.value());
  if (!value || !is_inbox_key_for(queue.dir, value->inbox)) return std::nullopt;
  return Addressee{{kv.key(), kv.create_revision()}, value->inbox, kv.lease()};
}

// The queue's entries in a read of it, oldest first, without the keys of
// longer names ("a/b" under "a").
std::vector<const mvccpb::KeyValue*> entries_of(const QueueDir& queue, const pb::RangeResponse& read) {
  std::vector<const mvccpb::KeyValue*> entries;
  for (const auto& kv : read.kvs()) {
    if (is_queue_entry(queue.dir, kv.key())) entries.push_back(&kv);
  }
  return entries;
}

}  // namespace

Release release_and_hand_over(const etcd::Client& client, const QueueDir& queue, const QueueEntry& own,
                              std::int64_t slots, bool read_head_first) {
  Release release;
  if (read_head_first) {
    // The successor is the entry just past the slots, once `own` holds one.
    auto head = head_read(queue);
    head.set_limit(slots + 1);  // keys of longer names among them only cost the note
    // Served by the member at hand, without the leader's confirmation that a
    // linearizable read waits for (often a whole write, under contention).
    // It may be a little stale; safety rests on the Txn's compares, and a
    // successor it missed is found by the delete's own read below.
    head.set_serializable(true);
    pb::RangeResponse read;
    try {
      read = client.range(head, client.command_deadline());
    } catch (const Error&) {
      // Nothing was written: release without the read.
    }
    const auto entries = entries_of(queue, read);  // points into `read`
    const auto slot_count = static_cast<std::size_t>(slots);
    const bool holds = std::any_of(entries.begin(), entries.begin() + std::min(entries.size(), slot_count),
                                   [&](const mvccpb::KeyValue* kv) { return kv->key() == own.key; });
    release.successor_seen = entries.size() > slot_count;
    if (const auto successor = holds && release.successor_seen ? addressee(queue, *entries[slot_count]) : std::nullopt) {
      const auto txn = hand_over_txn(own, successor->entry, successor->inbox, successor->lease,
                                     encode_note({successor->entry, slots}));
      release.entry_was_there = client.txn(txn, client.command_deadline(), etcd::write_site::release).succeeded();
      return release;
    }
  }
  auto txn = release_txn(queue, own);
  // The entries that hold after the delete: the last of them may be new.
  txn.mutable_success(1)->mutable_request_range()->set_limit(slots);
  const auto response = client.txn(txn, client.command_deadline(), etcd::write_site::release);
  release.entry_was_there = response.succeeded();
  if (!release.entry_was_there) return release;
  const auto& after = response.responses(1).response_range();
  const auto entries = entries_of(queue, after);
  if (static_cast<std::int64_t>(entries.size()) < slots) {
    release.successor_seen = after.more();
    return release;
  }
  release.successor_seen = true;
  // Queued behind us meanwhile: tell it, in a second write.
  if (const auto successor = addressee(queue, *entries[static_cast<std::size_t>(slots - 1)])) {
    try {
      client.txn(note_txn(successor->entry, successor->inbox, successor->lease, encode_note({successor->entry, slots})),
                 client.command_deadline(), etcd::write_site::note);
    } catch (const Error&) {
      // The release is done; the successor learns of its turn from its own
      // watch instead.
    }
  }
  return release;
}


// "<create revision> <slots> <key>": the key last, since it may hold spaces.
std::string encode_note(const Note& note) {
  return std::to_string(note.entry.revision) + " " + std::to_string(note.slots) + " " + note.entry.key;
}

std::optional<Note> decode_note(std::string_view text) {
  Note note;
  const char* const end = text.data() + text.size();
  auto [after_revision, error] = std::from_chars(text.data(), end, note.entry.revision);
  if (error != std::errc() || after_revision == end || *after_revision != ' ' || note.entry.revision <= 0) {
    return std::nullopt;
  }
  auto [after_slots, slots_error] = std::from_chars(after_revision + 1, end, note.slots);
  if (slots_error != std::errc() || after_slots == end || *after_slots != ' ' || note.slots <= 0) return std::nullopt;
  note.entry.key = std::string(after_slots + 1, end);
  return note;
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

HandOverInbox::HandOverInbox(etcd::WatchHub& watches, const etcd::Client& client, Worker& worker, const Logger& log,
                             std::string key)
    : watches_(watches), client_(client), worker_(worker), log_(log), key_(std::move(key)) {}

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
  last_expected_ = SteadyClock::now();
  schedule_clear();
}

void HandOverInbox::schedule_clear() {
  if (!note_present_ || !expected_.empty() || clear_scheduled_) return;
  clear_scheduled_ = true;
  worker_.post_at(SteadyClock::now() + kNoteLinger, [this] { clear_if_idle(); });
}

void HandOverInbox::clear_if_idle() {
  {
    MutexLock lock(mu_);
    clear_scheduled_ = false;
    if (!note_present_ || !expected_.empty()) return;
    if (const auto due = last_expected_ + kNoteLinger; SteadyClock::now() < due) {
      clear_scheduled_ = true;
      worker_.post_at(due, [this] { clear_if_idle(); });
      return;
    }
    note_present_ = false;
  }
  // A note put after this delete stays until the next idle moment; one put
  // before it was delivered all the same (a watch reports history).
  pb::TxnRequest clear;
  clear.add_success()->mutable_request_delete_range()->set_key(key_);
  client_.txn_async(std::move(clear), client_.command_deadline(), etcd::write_site::removal,
                    [this](pb::TxnResponse&&, const Error* error) {
                      if (!error || error->value() != errc::unavailable) return;
                      MutexLock lock(mu_);
                      note_present_ = true;  // tried again at the next idle moment
                      schedule_clear();
                    });
}

void HandOverInbox::on_notes(std::span<const etcd::WatchEvent> events) {
  MutexLock lock(mu_);
  if (!events.empty()) note_present_ = true;
  schedule_clear();
  for (const auto& event : events) {
    const auto note = decode_note(event.value);
    if (!note) continue;
    if (const auto found = expected_.find(note->entry.key); found != expected_.end()) {
      found->second->on_note(note->entry.revision, note->slots, event.mod_revision);
    }
  }
}

void HandOverInbox::on_missed() {
  MutexLock lock(mu_);
  for (auto& [key, receiver] : expected_) receiver->on_notes_missed();
}

}  // namespace etcdlock::detail
