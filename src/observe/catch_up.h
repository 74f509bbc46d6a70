// CatchUp: how an onlooker of a key range (an election's observer, a watch of
// locks) follows it without missing a change. It reads the range at some
// revision, then applies the events of a watch that starts at the revision
// after. When the watch reports a gap (etcd compacted the history it had to
// resume from), it reads the range again and holds back the events that come
// meanwhile; those up to the new read's revision are in the read, the rest
// are applied after it. A gap that comes while a read is under way may lie
// past that read's revision, so it makes the onlooker read once more.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "base/clock.h"
#include "base/worker.h"
#include "etcd/watch_hub.h"

namespace etcdlock::detail {

// Not thread-safe: its owner keeps it under its own mutex.
class CatchUp {
 public:
  // Events from the watch: true when the owner applies them now, false when
  // they were held back for the read under way.
  bool take(std::span<const etcd::WatchEvent> events);
  // The watch reported a gap: true when the owner must start a read now;
  // false when one is under way (it will read again when that one ends).
  bool gap();
  // A read at `revision` ended. Returns the events held back meanwhile, for
  // the owner to apply now; `read_again` tells it to start another read.
  std::vector<etcd::WatchEvent> read_done(std::int64_t revision, bool& read_again);

  // Whether `event` is already in the last read.
  bool in_last_read(const etcd::WatchEvent& event) const { return event.mod_revision <= read_revision_; }
  std::int64_t read_revision() const { return read_revision_; }

 private:
  std::int64_t read_revision_ = 0;
  bool reading_ = true;  // the first read, before the watch starts
  bool read_again_ = false;
  std::vector<etcd::WatchEvent> held_back_;
};

// Runs `read` on `worker` at `when`, off the watch's thread, since a read
// blocks; again after a pause each time it throws Error (etcd unreachable).
void read_on_worker(Worker& worker, std::function<void()> read, SteadyTime when = SteadyClock::now());

}  // namespace etcdlock::detail
