#include "session/inbox.h"

#include <charconv>

#include "etcd/lost_replies.h"

namespace etcdlock::detail {

namespace {

// The part of an entry next in line: "+<create revision> <lease> <key
// length> <inbox length> <key><inbox>". The inbox key holds a NUL (see
// keys/key_layout.h), so the part is read by its lengths, not up to the next
// NUL. The '+' keeps its pieces from reading as notes (std::from_chars takes
// no sign, and the inbox's tail begins with a letter), for this decoder and
// for those written before such parts, which skip them.
std::string encode_next_in_line(const Successor& next) {
  return "+" + std::to_string(next.entry.revision) + " " + std::to_string(next.lease) + " " +
         std::to_string(next.entry.key.size()) + " " + std::to_string(next.inbox.size()) + " " + next.entry.key +
         next.inbox;
}

// Reads a decimal number that a space follows, and moves `text` past both.
template <class Number>
bool take_number(std::string_view& text, Number& number) {
  const char* const end = text.data() + text.size();
  const auto [after, error] = std::from_chars(text.data(), end, number);
  if (error != std::errc() || after == end || *after != ' ') return false;
  text.remove_prefix(static_cast<std::size_t>(after + 1 - text.data()));
  return true;
}

// Reads the part of an entry next in line at the start of `text`, and moves
// `text` past it; nullopt (and `text` as it was) when there is none.
std::optional<Successor> take_next_in_line(std::string_view& text) {
  auto rest = text;
  if (!rest.starts_with('+')) return std::nullopt;
  rest.remove_prefix(1);
  Successor next;
  std::size_t key_size = 0;
  std::size_t inbox_size = 0;
  if (!take_number(rest, next.entry.revision) || !take_number(rest, next.lease) || !take_number(rest, key_size) ||
      !take_number(rest, inbox_size)) {
    return std::nullopt;
  }
  if (next.entry.revision <= 0 || key_size == 0 || inbox_size == 0 || key_size > rest.size() ||
      inbox_size > rest.size() - key_size) {
    return std::nullopt;
  }
  rest.remove_prefix(key_size + inbox_size);
  if (!rest.empty() && rest.front() != '\0') return std::nullopt;
  next.entry.key = std::string(text.substr(text.size() - rest.size() - inbox_size - key_size, key_size));
  next.inbox = std::string(text.substr(text.size() - rest.size() - inbox_size, inbox_size));
  text = rest;
  return next;
}

}  // namespace

std::string encode_note(const Note& note) {
  // The key last in its part, since it may hold spaces.
  std::string text = std::to_string(note.entry.revision) + " " + std::to_string(note.limit) + " " + note.entry.key;
  for (const auto& next : note.next_in_line) {
    text += '\0';
    text += encode_next_in_line(next);
  }
  return text;
}

std::optional<Note> decode_note(std::string_view text) {
  Note note;
  if (!take_number(text, note.entry.revision) || note.entry.revision <= 0) return std::nullopt;
  if (!take_number(text, note.limit) || note.limit <= 0) return std::nullopt;
  note.entry.key = std::string(text);
  return note;
}

std::string encode_notes(std::span<const Note> notes) {
  std::string text;
  for (const auto& note : notes) {
    if (!text.empty()) text += '\0';
    text += encode_note(note);
  }
  return text;
}

std::vector<Note> decode_notes(std::string_view text) {
  std::vector<Note> notes;
  // Whether the last part was a note, or one of its next in line: a part
  // next in line belongs to the note right before it, with no gap between.
  bool in_note = false;
  for (;;) {
    if (in_note) {
      if (auto next = take_next_in_line(text)) {
        notes.back().next_in_line.push_back(std::move(*next));
        if (text.empty()) return notes;
        text.remove_prefix(1);  // its NUL
        continue;
      }
    }
    const auto end = text.find('\0');
    if (auto note = decode_note(text.substr(0, end))) {
      notes.push_back(std::move(*note));
      in_note = true;
    } else {
      in_note = false;
    }
    if (end == std::string_view::npos) return notes;
    text.remove_prefix(end + 1);
  }
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
    // A refusal closes the inbox whatever came before: a watch refused when
    // the hub makes it again (a new stream after a break, a permission
    // revoked meanwhile) receives no more notes, and waiters that counted on
    // them would each wait out QueueWait::kPredecessorWatchDelay. It opens
    // only once: the holder values of this manager's primitives name the
    // inbox or not from then on, and a waiter whose value names none must
    // not count on notes.
    if (!open_ || !in_place) open_ = in_place;
  }
  opened_.notify_all();
}

void HandOverInbox::expect(const std::string& entry_key, HandOverReceiver& receiver) {
  MutexLock lock(mu_);
  expected_[entry_key] = &receiver;
}

void HandOverInbox::forget(const std::string& entry_key, const HandOverReceiver& receiver) {
  MutexLock lock(mu_);
  if (const auto found = expected_.find(entry_key); found != expected_.end() && found->second == &receiver) {
    expected_.erase(found);
  }
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
    for (const auto& note : decode_notes(event.value)) {
      if (const auto found = expected_.find(note.entry.key); found != expected_.end()) {
        found->second->on_note(note, event.mod_revision);
      }
    }
  }
}

void HandOverInbox::on_missed() {
  MutexLock lock(mu_);
  for (auto& [key, receiver] : expected_) receiver->on_notes_missed();
}

}  // namespace etcdlock::detail
