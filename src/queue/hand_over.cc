#include "queue/hand_over.h"

#include <algorithm>
#include <latch>

#include "etcd/lost_replies.h"
#include "keys/holder_value.h"
#include "keys/key_layout.h"
#include "session/inbox.h"

namespace etcdlock::detail {
namespace {

// An entry that can receive a note: an entry of the queue's own name (a
// waiter of a longer name, "a/b" under "a", is admitted by its own queue's
// rules, which no note of ours speaks for) whose value names an inbox under a
// prefix that contains the queue.
std::optional<Successor> addressee(const QueueDir& queue, const mvccpb::KeyValue& kv) {
  if (!is_own_entry(queue.dir, kv.key())) return std::nullopt;
  const auto value = decode_holder_value(kv.value());
  if (!value || !is_inbox_key_for(queue.dir, value->inbox)) return std::nullopt;
  return Successor{{kv.key(), kv.create_revision()}, value->inbox, kv.lease()};
}

// The queue's entries in a read of it, oldest first. The keys of longer names
// ("a/b" under "a") count in the order, as in etcd's recipe; inbox keys do
// not, as for Admission (see keys/key_layout.h). A read that skipped one has
// fewer entries than it asked for: then no note is written, which only costs
// the successor a moment.
std::vector<const mvccpb::KeyValue*> entries_of(const pb::RangeResponse& read) {
  std::vector<const mvccpb::KeyValue*> entries;
  entries.reserve(static_cast<std::size_t>(read.kvs_size()));
  for (const auto& kv : read.kvs()) {
    if (!is_inbox_key(kv.key())) entries.push_back(&kv);
  }
  return entries;
}

// Puts the note that tells `successor` it is among the first `limit`
// entries, guarded by its create revision. Throws Error as Client::txn.
void send_note(const etcd::Client& client, const Successor& successor, std::int64_t limit, SteadyTime deadline) {
  client.txn(note_txn(successor.entry, successor.inbox, successor.lease, encode_note({successor.entry, limit})),
             deadline, etcd::write_site::note);
}

// After a release that put no note: `holding` is the queue's first `limit`
// entries once our entry went. The last of them may have waited for our
// slot: tell it, in a second write.
void note_new_holder(const etcd::Client& client, const QueueDir& queue, const pb::RangeResponse& holding,
                     std::int64_t limit, Release& release) {
  const auto entries = entries_of(holding);
  if (static_cast<std::int64_t>(entries.size()) < limit) {
    release.successor_seen = holding.more();
    return;
  }
  release.successor_seen = true;
  if (const auto successor = addressee(queue, *entries[static_cast<std::size_t>(limit - 1)])) {
    try {
      send_note(client, *successor, limit, client.command_deadline());
    } catch (const Error&) {
      // The release is done; the successor learns of its turn from its own
      // watch instead.
    }
  }
}

// Deletes `own` and puts a note for `successor` in one Txn (see
// hand_over_txn); if the successor went meanwhile, the one that holds now
// gets its note in a second write.
Release hand_over(const etcd::Client& client, const QueueDir& queue, const QueueEntry& own, const Successor& successor,
                  std::int64_t limit) {
  const auto txn = hand_over_txn(queue, own, successor, limit, encode_note({successor.entry, limit}));
  const auto response = client.queue_write(txn, etcd::write_site::release, client.command_deadline());
  Release release{response.succeeded(), true};
  if (!release.entry_was_there) return release;
  const auto& inner = response.responses(0).response_txn();
  if (!inner.succeeded()) note_new_holder(client, queue, inner.responses(1).response_range(), limit, release);
  return release;
}

// Notes for several queues, grouped by inbox: etcd refuses a key twice in
// one Txn, and a manager whose waiters are next in several queues gets one
// note for all of them.
class NoteGroups {
 public:
  // Groups of at most `per_inbox` notes.
  explicit NoteGroups(std::size_t per_inbox = kMaxTxnOps) : per_inbox_(per_inbox) {}
  // Adds the note for `successor`, the one of `queue`; false if its inbox's
  // group cannot take it: the group is for another lease of that manager, or
  // full.
  bool add(std::size_t queue, const Successor& successor) {
    auto found =
        std::ranges::find_if(groups_, [&](const Group& group) { return group.notes.inbox == successor.inbox; });
    if (found == groups_.end()) {
      groups_.push_back({{successor.inbox, successor.lease, {}, {}}, {}, {}});
      found = groups_.end() - 1;
    } else if (found->notes.lease != successor.lease || found->notes.successors.size() >= per_inbox_) {
      return false;
    }
    found->notes.successors.push_back(successor.entry);
    found->for_queues.push_back(queue);
    found->parts.push_back({successor.entry, 1});
    return true;
  }
  // Whether a note for `inbox` would join a group rather than start one.
  bool has(std::string_view inbox) const {
    return std::ranges::any_of(groups_, [&](const Group& group) { return group.notes.inbox == inbox; });
  }
  std::size_t size() const { return groups_.size(); }
  // Drops the groups whose nested Txn would not fit in a parent Txn of
  // `parent_ops` operations besides the groups (see kMaxTxnOps); their
  // queues get no note from this Txn.
  void keep_fitting(std::size_t parent_ops) {
    for (;;) {
      const std::size_t room = kMaxTxnOps - std::min(kMaxTxnOps, parent_ops + groups_.size());
      const auto too_big =
          std::ranges::find_if(groups_, [&](const Group& group) { return group.notes.successors.size() > room; });
      if (too_big == groups_.end()) return;
      groups_.erase(too_big);
    }
  }
  std::vector<InboxNotes> requests() {
    std::vector<InboxNotes> all;
    for (auto& group : groups_) {
      group.notes.notes = encode_notes(group.parts);
      all.push_back(group.notes);
    }
    return all;
  }
  // The queues whose note group `index` carried.
  const std::vector<std::size_t>& queues_of(std::size_t index) const { return groups_[index].for_queues; }

 private:
  struct Group {
    InboxNotes notes;
    std::vector<std::size_t> for_queues;
    std::vector<Note> parts;
  };
  std::size_t per_inbox_;
  std::vector<Group> groups_;
};

// Tells each of `heads`, the first entry of its queue now, that it holds.
// The notes go in as few Txns as fit, not one per head in series, so that
// the last head is not told a round trip per head ahead of it later. A head
// whose group's put did not land (another head of its manager went
// meanwhile), or whose Txn was refused or went unanswered, is told alone.
void note_heads(const etcd::Client& client, const std::vector<Successor>& heads, SteadyTime deadline) {
  // etcd lets a nested Txn have only the operations its parent leaves: a Txn
  // of up to 64 groups of up to 64 notes each fits.
  constexpr std::size_t kGroupsPerTxn = kMaxTxnOps / 2;
  constexpr std::size_t kNotesPerGroup = kMaxTxnOps - kGroupsPerTxn;
  constexpr std::size_t kNoteBytesPerTxn = 512 * 1024;
  constexpr std::size_t kNoteOverhead = 64;  // revisions, limits, the Txn's framing
  std::vector<const Successor*> pending;
  for (const auto& head : heads) pending.push_back(&head);
  std::vector<const Successor*> alone;
  while (!pending.empty()) {
    // One Txn: the heads that fit go in it, the others wait for the next
    // (the first always fits, so each round tells at least one).
    NoteGroups groups(kNotesPerGroup);
    std::vector<const Successor*> in_txn;
    std::vector<const Successor*> later;
    std::size_t bytes = 0;
    for (const auto* head : pending) {
      // A note carries the entry's key, the put its inbox's: long names must
      // not make a request etcd refuses (its limit is 1.5 MiB by default).
      const std::size_t size = 2 * head->entry.key.size() + head->inbox.size() + kNoteOverhead;
      const bool fits = (groups.size() < kGroupsPerTxn || groups.has(head->inbox)) &&
                        (in_txn.empty() || bytes + size <= kNoteBytesPerTxn);
      if (fits && groups.add(in_txn.size(), *head)) {
        in_txn.push_back(head);
        bytes += size;
      } else {
        later.push_back(head);
      }
    }
    pending = std::move(later);
    const auto requests = groups.requests();
    try {
      const auto response = client.txn(notes_txn(requests), deadline, etcd::write_site::note);
      for (std::size_t k = 0; k < requests.size() && static_cast<int>(k) < response.responses_size(); ++k) {
        if (response.responses(static_cast<int>(k)).response_txn().succeeded()) continue;
        for (const auto index : groups.queues_of(k)) alone.push_back(in_txn[index]);
      }
    } catch (const std::exception&) {
      // Refused, or its outcome unknown: these heads are told one by one (a
      // note is only a hint, a second one harmless: a head confirms by a
      // read before it holds), within the same deadline.
      alone.insert(alone.end(), in_txn.begin(), in_txn.end());
    }
  }
  for (const auto* head : alone) {
    try {
      send_note(client, *head, 1, deadline);
    } catch (const std::exception&) {
      // This head learns of its turn from its watch; the next may still be told.
    }
  }
}

}  // namespace

bool leaves_a_note(const QueueDir& queue, std::string_view key, std::string_view value) {
  if (!is_own_entry(queue.dir, key)) return false;  // a longer name's: it notes its own queue
  const auto decoded = decode_holder_value(value);
  // A semaphore's or a reader's entry under the lock's name would not.
  return decoded && decoded->limit == 0 && decoded->side == HolderValue::Side::none &&
         is_inbox_key_for(queue.dir, decoded->inbox);
}

OwnAndNext own_and_next(const QueueDir& queue, const QueueEntry& own, const pb::RangeResponse& read) {
  OwnAndNext found;
  bool own_seen = false;
  bool revision_shared = false;
  for (const auto& kv : read.kvs()) {
    if (is_inbox_key(kv.key())) continue;
    if (kv.key() == own.key && kv.create_revision() == own.revision) {
      own_seen = true;
    } else if (kv.create_revision() == own.revision) {
      // Another key of the Txn that created ours (a multi-lock's, of a
      // nested name): it stays in the queue when ours goes, ahead of
      // whatever follows, so no one behind it is known to be next.
      revision_shared = true;
    } else {
      // The first entry created after ours, whether it takes notes or not:
      // a note goes to no one else.
      if (own_seen && !revision_shared) found.next = addressee(queue, kv);
      break;
    }
  }
  if (own_seen) {
    found.own_stands = true;
  } else if (!read.more()) {
    found.own_stands = false;
  }
  return found;
}

namespace {

// The first entry that `read` (of a queue, made once our entry created at
// `gone_revision` was gone) shows, if it is a lock's waiter behind ours. One
// that was ahead of ours held already, or waits for another: only one behind
// it has waited for us. One created after `gone_by` (when not 0), the
// revision as of which ours was gone, never saw ours: it read its queue
// without it, and a note would wait unread in an inbox that expects none
// (which under a nested prefix holds the outer name back until cleared).
std::optional<Successor> first_behind(const QueueDir& queue, const pb::RangeResponse& read, std::int64_t gone_revision,
                                      std::int64_t gone_by = 0) {
  const auto entries = entries_of(read);
  if (entries.empty() || entries[0]->create_revision() <= gone_revision) return std::nullopt;
  if (gone_by != 0 && entries[0]->create_revision() > gone_by) return std::nullopt;
  if (!leaves_a_note(queue, entries[0]->key(), entries[0]->value())) return std::nullopt;
  return addressee(queue, *entries[0]);
}

}  // namespace

void note_first_behind(const etcd::Client& client, const QueueDir& queue, const pb::RangeResponse& first,
                       std::int64_t gone_revision) noexcept {
  try {
    const auto head = first_behind(queue, first, gone_revision);
    if (!head) return;
    client.txn_async(note_txn(head->entry, head->inbox, head->lease, encode_note({head->entry, 1})),
                     client.command_deadline(), etcd::write_site::note, [](pb::TxnResponse&&, const Error*) {
                       // Told, or left to the waiter's watch.
                     });
  } catch (const std::exception&) {
    // Left to the waiter's watch.
  }
}

void note_new_heads_after_revoke(const etcd::Client& client, const std::vector<VacatedQueue>& queues,
                                 std::int64_t revoke_revision, std::string_view own_inbox,
                                 SteadyTime deadline) noexcept {
  std::vector<Successor> heads;
  try {
    for (std::size_t first = 0; first < queues.size(); first += kMaxTxnOps) {
      const std::size_t count = std::min(kMaxTxnOps, queues.size() - first);
      // Linearizable, and issued after the revoke's reply: each read shows
      // its queue without our entries, so its first entry holds now.
      // (Entries are created last, so while that one stands nothing comes
      // before it; the note's compare on its create revision says it still
      // stands.)
      pb::TxnRequest reads;  // no compares: the success branch, every read in one revision
      for (std::size_t i = 0; i < count; ++i) {
        *reads.add_success()->mutable_request_range() = head_read(queues[first + i].queue);
      }
      const auto read = client.txn(reads, deadline);
      for (std::size_t i = 0; i < count && static_cast<int>(i) < read.responses_size(); ++i) {
        auto head = first_behind(queues[first + i].queue, read.responses(static_cast<int>(i)).response_range(),
                                 queues[first + i].first_own, revoke_revision);
        if (head && head->inbox != own_inbox) heads.push_back(std::move(*head));
      }
    }
  } catch (const std::exception&) {
    // The heads not read learn of their turn from their watches; those read
    // are still told.
  }
  note_heads(client, heads, deadline);
}

Release release_and_hand_over(const etcd::Client& client, const QueueDir& queue, const QueueEntry& own,
                              std::int64_t limit, bool read_head_first, const Successor* known_successor) {
  // Known from the read that confirmed our hold (a lock's: the entry right
  // behind ours then is still the first behind it, if it still stands; any
  // entry created since is behind it): no read.
  if (known_successor && limit == 1) return hand_over(client, queue, own, *known_successor, limit);
  if (read_head_first) {
    // The successor is the entry just past the limit, once `own` holds one.
    auto head = head_read(queue);
    head.set_limit(limit + 1);
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
    const auto entries = entries_of(read);  // points into `read`
    const auto slot_count = static_cast<std::size_t>(limit);
    const bool holds = std::any_of(entries.begin(), entries.begin() + std::min(entries.size(), slot_count),
                                   [&](const mvccpb::KeyValue* kv) { return kv->key() == own.key; });
    if (const auto successor =
            holds && entries.size() > slot_count ? addressee(queue, *entries[slot_count]) : std::nullopt) {
      return hand_over(client, queue, own, *successor, limit);
    }
  }
  auto txn = release_txn(queue, own);
  // The entries that hold after the delete: the last of them may be new.
  txn.mutable_success(1)->mutable_request_range()->set_limit(limit);
  const auto response = client.queue_write(txn, etcd::write_site::release, client.command_deadline());
  Release release{response.succeeded(), false};
  if (release.entry_was_there) note_new_holder(client, queue, response.responses(1).response_range(), limit, release);
  return release;
}

namespace {

// The entry that follows `own` at the head of each queue, where it can take a
// note: read before the release, from the member at hand (as
// release_and_hand_over does), all queues at once.
std::vector<std::optional<Successor>> successors_before_release(const etcd::Client& client,
                                                                const std::vector<QueueDir>& queues,
                                                                const std::vector<QueueEntry>& own) {
  std::vector<std::optional<pb::RangeResponse>> reads(queues.size());  // one element per thread that answers
  std::latch done(static_cast<std::ptrdiff_t>(queues.size()));
  for (std::size_t i = 0; i < queues.size(); ++i) {
    auto head = head_read(queues[i]);
    head.set_serializable(true);
    // The client answers every call by its deadline, so the wait below ends.
    client.range_async(std::move(head), client.command_deadline(),
                       [&, i](pb::RangeResponse&& read, const Error* error) {
                         if (!error) reads[i] = std::move(read);
                         done.count_down();
                       });
  }
  done.wait();
  std::vector<std::optional<Successor>> successors(queues.size());
  for (std::size_t i = 0; i < queues.size(); ++i) {
    if (!reads[i]) continue;  // nothing was written: the note waits for the release's own read
    const auto entries = entries_of(*reads[i]);
    if (entries.size() >= 2 && entries.front()->key() == own[i].key) successors[i] = addressee(queues[i], *entries[1]);
  }
  return successors;
}

}  // namespace

MultiRelease release_all_and_hand_over(const etcd::Client& client, const std::vector<QueueDir>& queues,
                                       const std::vector<QueueEntry>& own, bool read_heads_first) {
  // Successors known before the release get their notes in its Txn.
  NoteGroups in_release;
  if (read_heads_first) {
    const auto successors = successors_before_release(client, queues, own);
    for (std::size_t i = 0; i < queues.size(); ++i) {
      if (successors[i]) in_release.add(i, *successors[i]);
    }
  }
  in_release.keep_fitting(2 * queues.size());  // a delete and a read per queue
  const auto notes = in_release.requests();
  const auto response =
      client.txn(multi_release_txn(queues, own, notes), client.command_deadline(), etcd::write_site::multi_release);
  MultiRelease release{response.succeeded(), {}, false};
  if (!release.all_were_there) {
    for (std::size_t i = 0; i < own.size(); ++i) {
      const auto& found = response.responses(static_cast<int>(i)).response_range();
      release.still_there.push_back(found.kvs_size() > 0 && found.kvs(0).create_revision() == own[i].revision);
    }
    return release;
  }
  std::vector<bool> noted(queues.size(), false);
  for (std::size_t k = 0; k < notes.size(); ++k) {
    const auto& put = response.responses(static_cast<int>(own.size() + queues.size() + k)).response_txn();
    if (!put.succeeded()) continue;  // a successor went meanwhile
    for (const auto queue : in_release.queues_of(k)) noted[queue] = true;
  }
  // Each queue's first entry now holds: those that got no note yet get one
  // in a second write (queued after the read, or the read failed).
  std::vector<Successor> heads;
  for (std::size_t i = 0; i < queues.size(); ++i) {
    const auto& after = response.responses(static_cast<int>(own.size() + i)).response_range();
    const auto entries = entries_of(after);
    if (!entries.empty()) release.successor_seen = true;
    if (noted[i] || entries.empty()) continue;
    if (auto successor = addressee(queues[i], *entries.front())) heads.push_back(std::move(*successor));
  }
  // The release is done; a head not told learns of its turn from its watch.
  note_heads(client, heads, client.command_deadline());
  return release;
}

void HandOverReleaser::release(Hold& hold, bool in_doubt, std::error_code& ec) noexcept {
  const bool read_head_first = expect_successor_.load(std::memory_order_relaxed);
  std::optional<Release> release;
  hold.give_up(
      [&] {
        release = release_and_hand_over(named_.context->client(), named_.queue, hold.entry(), limit_, read_head_first,
                                        hold.successor());
        return release->entry_was_there;
      },
      in_doubt, ec);
  if (release) expect_successor_.store(release->successor_seen, std::memory_order_relaxed);
}

}  // namespace etcdlock::detail
