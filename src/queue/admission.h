// Admission: when an entry of a queue holds, and what it waits for otherwise.
// Entries are ordered by create revision, and one of three rules applies:
//   exclusive  locks, elections, the writers of a read-write lock: when no
//              entry is ahead of it;
//   counted(n) semaphores: when fewer than n entries are ahead of it;
//   shared     the readers of a read-write lock: when no exclusive entry is
//              ahead of it. An entry is exclusive unless its value says it
//              reads, so keys of etcdctl and Go's Mutex, with no etcdlock
//              value, count as exclusive.
// A waiter watches the entries whose going can admit it: its predecessor; the
// n newest entries ahead; the newest exclusive entry ahead.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "keys/queue_requests.h"

namespace etcdlock::detail {

class Admission {
 public:
  enum class Rule { exclusive, counted, shared };

  static Admission exclusive() { return Admission(Rule::exclusive, 1); }
  static Admission counted(std::int64_t limit) { return Admission(Rule::counted, limit); }
  static Admission shared() { return Admission(Rule::shared, 0); }

  Rule rule() const { return rule_; }
  // How many entries hold at once, for hand-over notes; 0 when notes do not
  // apply (readers are admitted together, by their own reads).
  std::int64_t limit() const { return limit_; }
  // How many keys a first read of the entries ahead asks for, and whether
  // it needs their values.
  std::int64_t first_read_limit() const;
  // (A semaphore's reads carry values too: its entries' limits are compared.)
  bool reads_values() const { return rule_ != Rule::exclusive; }
  // Whether a waiter must hear of changes to the entries it watches, not
  // only of their deletion: a writer that becomes a reader (a downgrade).
  bool watches_changes() const { return rule_ == Rule::shared; }

  // The entries ahead of ours, read newest first, page by page.
  class Scan {
   public:
    explicit Scan(const Admission& admission) : admission_(admission) {}
    // Takes a page of keys created before `below` (every key of the queue's
    // range, also one of a longer name); after it, either decided()
    // or the next page is to be read below next_below().
    void take(const pb::RangeResponse& page, std::int64_t below);
    bool decided() const { return decided_; }
    std::int64_t next_below() const { return next_below_; }
    // Once decided: admitted, or held back by blockers() (the entries to watch).
    bool admitted() const { return decided_ && blockers_.empty(); }
    const std::vector<QueueEntry>& blockers() const { return blockers_; }
    // Their values, one per blocker; empty when the pages were read without.
    const std::vector<std::string>& blocker_values() const { return blocker_values_; }

   private:
    void block(const mvccpb::KeyValue& kv);

    const Admission& admission_;
    std::vector<QueueEntry> blockers_;
    std::vector<std::string> blocker_values_;
    std::int64_t next_below_ = 0;
    bool decided_ = false;
  };

 private:
  Admission(Rule rule, std::int64_t limit) : rule_(rule), limit_(limit) {}

  Rule rule_;
  std::int64_t limit_;
};

// The same rules applied from the head of a queue by an onlooker that reads
// every entry (the admin's list, LockManager::watch): which of the entries,
// given by their values oldest first, hold. Each entry's rule comes from its
// value: a semaphore's limit, a reader's mode, or else exclusive.
std::vector<bool> holding_entries(std::span<const std::string* const> values);

// The rule of one entry as an onlooker reads it from its value, and whether
// it holds behind `ahead` entries, `exclusive_ahead` of which do not read:
// the step holding_entries() takes for each entry, for onlookers that leave
// some entries out (the deadlock view, deadlocks.h).
struct EntryRule {
  std::int64_t limit = 0;  // a semaphore's; 0 for others
  bool reader = false;
};
EntryRule entry_rule(std::string_view value);
bool admitted_behind(EntryRule rule, std::int64_t ahead, std::int64_t exclusive_ahead);

}  // namespace etcdlock::detail
