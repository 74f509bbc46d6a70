#include "session/inbox.h"

#include <algorithm>
#include <charconv>
#include <exception>
#include <utility>

#include "etcd/lost_replies.h"

namespace etcdlock::detail {

// "<create revision> <limit> <key>": the key last, since it may hold spaces.
std::string encode_note(const Note& note) {
  return std::to_string(note.entry.revision) + " " + std::to_string(note.limit) + " " + note.entry.key;
}

std::optional<Note> decode_note(std::string_view text) {
  Note note;
  const char* const end = text.data() + text.size();
  auto [after_revision, error] = std::from_chars(text.data(), end, note.entry.revision);
  if (error != std::errc() || after_revision == end || *after_revision != ' ' || note.entry.revision <= 0) {
    return std::nullopt;
  }
  auto [after_limit, limit_error] = std::from_chars(after_revision + 1, end, note.limit);
  if (limit_error != std::errc() || after_limit == end || *after_limit != ' ' || note.limit <= 0) return std::nullopt;
  note.entry.key = std::string(after_limit + 1, end);
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
  for (;;) {
    const auto end = text.find('\0');
    if (auto note = decode_note(text.substr(0, end))) notes.push_back(std::move(*note));
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
  const auto watch = watches_.add(key_, "", 0, std::make_shared<Listener>(*this), etcd::WatchHub::Events::puts_only,
                                  etcd::WatchHub::Urgency::on_demand);
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
  schedule_drain();
}

void HandOverInbox::entry_gone() noexcept {
  try {
    MutexLock lock(mu_);
    schedule_drain();
  } catch (...) {
    // Out of memory: see the header.
  }
}

void HandOverInbox::schedule_drain() {
  // While a demand is held the watch is read anyway, and its end schedules
  // a drain (end_demand_if_idle).
  if (demand_held_) return;
  const auto due = SteadyClock::now() + kNoteLinger;
  drain_wanted_by_ = std::max(drain_wanted_by_, due);
  // A drain pending already runs sooner than this request wants: a note may
  // reach the watch stream after the progress answer that drain reads up to.
  // It runs all the same (put off with each request, it would never run on a
  // manager that never pauses), and posts one more for drain_wanted_by_.
  if (!drain_scheduled_) post_drain(due);
}

void HandOverInbox::post_drain(SteadyTime due) {
  // The flags of this class are set once the post succeeded: the task takes
  // mu_, which is held here, so it cannot run first, and a post that throws
  // (out of memory) leaves no flag that would stop every later one.
  worker_.post_at(due, [this] { drain(); });
  drain_scheduled_ = true;
}

void HandOverInbox::drain() noexcept {
  try {
    {
      MutexLock lock(mu_);
      drain_scheduled_ = false;
      if (demand_held_) return;  // read at once anyway, and drained after the demand's end
    }
    // What a drain reads up to is fixed when its progress request leaves: it
    // serves the requests made kNoteLinger before that, however late it ran.
    const auto sent = SteadyClock::now();
    watches_.drain();
    MutexLock lock(mu_);
    if (drain_scheduled_ || demand_held_ || drain_wanted_by_ <= sent) return;
    post_drain(drain_wanted_by_);
  } catch (const std::exception&) {
    // Out of memory: a note this drain did not read stays until the next one.
  }
}

void HandOverInbox::await_notes() {
  {
    MutexLock lock(mu_);
    ++awaiting_;
    if (std::exchange(demand_held_, true)) return;
  }
  watches_.demand();
}

void HandOverInbox::stop_awaiting_notes() {
  MutexLock lock(mu_);
  if (awaiting_ == 0 || --awaiting_ > 0) return;
  last_awaited_ = SteadyClock::now();
  if (demand_end_scheduled_) return;
  worker_.post_at(last_awaited_ + kAwaitLinger, [this] { end_demand_if_idle(); });
  demand_end_scheduled_ = true;
}

void HandOverInbox::end_demand_if_idle() noexcept {
  try {
    {
      MutexLock lock(mu_);
      demand_end_scheduled_ = false;
      if (awaiting_ > 0 || !demand_held_) return;
      if (const auto due = last_awaited_ + kAwaitLinger; SteadyClock::now() < due) {
        worker_.post_at(due, [this] { end_demand_if_idle(); });
        demand_end_scheduled_ = true;
        return;
      }
      demand_held_ = false;
      // What came while the demand was held may not all have been read: the
      // hub stops at the next response it gets, and a note queued behind it
      // (put for an entry whose forget() or entry_gone() came while a demand
      // was held, and so scheduled no drain) would stay unread. Read later,
      // as a drain does: etcd 3.4 may answer a progress request before
      // events it has yet to send.
      try {
        schedule_drain();
      } catch (const std::exception&) {
        // Out of memory: such a note stays until the next drain; the demand
        // ends all the same, or the hub would read for the manager's life.
      }
    }
    watches_.end_demand();
  } catch (const std::exception&) {
    // Out of memory: the demand stays held, and the hub reads, until the
    // next waiter's stop_awaiting_notes() schedules this again.
  }
}

void HandOverInbox::note_arrived() {
  if (!std::exchange(note_present_, true)) note_since_ = SteadyClock::now();
  schedule_clear();
}

SteadyTime HandOverInbox::clear_due() const {
  const auto latest = note_since_ + kNoteMaxStay;
  return expected_.empty() ? std::min(last_expected_ + kNoteLinger, latest) : latest;
}

void HandOverInbox::schedule_clear() {
  if (!note_present_) return;
  const auto due = clear_due();
  if (due >= clear_at_) return;  // the pending run comes sooner, and schedules again if early
  worker_.post_at(due, [this, due] { clear_if_due(due); });
  clear_at_ = due;
}

void HandOverInbox::clear_if_due(SteadyTime scheduled_for) {
  {
    MutexLock lock(mu_);
    if (scheduled_for != clear_at_) return;  // a sooner run took over
    clear_at_ = SteadyTime::max();
    if (!note_present_) return;
    if (SteadyClock::now() < clear_due()) {
      schedule_clear();
      return;
    }
    note_present_ = false;
  }
  // A note put after this delete stays until the next delete; one put
  // before it was delivered all the same (a watch reports history), to a
  // waiter that expects it or not.
  pb::TxnRequest clear;
  clear.add_success()->mutable_request_delete_range()->set_key(key_);
  client_.txn_async(std::move(clear), client_.command_deadline(), etcd::write_site::removal,
                    [this](pb::TxnResponse&&, const Error* error) {
                      if (!error || error->value() != errc::unavailable) return;
                      MutexLock lock(mu_);
                      note_arrived();  // tried again when due, as for a new note
                    });
}

void HandOverInbox::on_notes(std::span<const etcd::WatchEvent> events) {
  MutexLock lock(mu_);
  if (!events.empty()) note_arrived();
  for (const auto& event : events) {
    for (const auto& note : decode_notes(event.value)) {
      if (const auto found = expected_.find(note.entry.key); found != expected_.end()) {
        found->second->on_note(note.entry.revision, note.limit, event.mod_revision);
      }
    }
  }
}

void HandOverInbox::on_missed() {
  MutexLock lock(mu_);
  // A note may have come unseen, for an entry that never waited too: the
  // key is deleted once idle, as after a note read.
  note_arrived();
  for (auto& [key, receiver] : expected_) receiver->on_notes_missed();
}

}  // namespace etcdlock::detail
