// QueueWait: one process's wait in a lock's queue, driven by watch events.
//
// A waiter reads the entries ahead of its own at some revision R, then learns
// of their deletions from the lock's watch, which delivers every change after
// R. When none is left, and its own entry was not deleted, it is first: it
// holds the lock as of the revision of the last deletion, with no further
// read. Deletions that arrive while a read is in flight are kept and applied
// once the read's revision is known, so none is lost and none is applied twice.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace etcdlock::detail {

// Not thread-safe: the owning lock guards it.
class QueueWait {
 public:
  explicit QueueWait(std::string own_key) : own_key_(std::move(own_key)) {}

  const std::string& own_key() const { return own_key_; }
  std::int64_t own_revision() const { return own_revision_; }

  // A read is starting: deletions seen from now on are kept until read_done().
  void begin_read();
  // The read's result: our entry's create revision, the revision the read saw,
  // and the keys of the entries ahead of ours.
  void read_done(std::int64_t own_revision, std::int64_t read_revision, std::vector<std::string> ahead);

  // A deletion of `key` at `revision`, as the watch delivered it.
  void on_delete(const std::string& key, std::int64_t revision);
  // Changes may have been missed: the waiter must read again.
  void on_gap() { needs_read_ = true; }

  bool reading() const { return reading_; }
  bool needs_read() const { return needs_read_ && !reading_; }
  bool own_entry_deleted() const { return own_entry_deleted_; }
  // Our entry is first in the queue.
  bool first() const { return !reading_ && !needs_read_ && !own_entry_deleted_ && ahead_.empty(); }
  std::size_t ahead() const { return ahead_.size(); }

 private:
  void apply(const std::string& key, std::int64_t revision);

  std::string own_key_;
  std::int64_t own_revision_ = 0;
  std::int64_t read_revision_ = 0;
  std::set<std::string> ahead_;
  std::vector<std::pair<std::string, std::int64_t>> pending_;  // deletions seen during a read
  bool reading_ = true;
  bool needs_read_ = false;
  bool own_entry_deleted_ = false;
};

}  // namespace etcdlock::detail
