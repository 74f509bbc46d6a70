#include "queue_wait.h"

namespace etcdlock::detail {

void QueueWait::begin_read() {
  reading_ = true;
  needs_read_ = false;
  pending_.clear();
}

void QueueWait::read_done(std::int64_t own_revision, std::int64_t read_revision, std::vector<std::string> ahead) {
  own_revision_ = own_revision;
  read_revision_ = read_revision;
  ahead_ = std::set<std::string>(std::make_move_iterator(ahead.begin()), std::make_move_iterator(ahead.end()));
  reading_ = false;
  for (const auto& [key, revision] : pending_) apply(key, revision);
  pending_.clear();
}

void QueueWait::on_delete(const std::string& key, std::int64_t revision) {
  if (reading_) {
    pending_.emplace_back(key, revision);
  } else {
    apply(key, revision);
  }
}

void QueueWait::apply(const std::string& key, std::int64_t revision) {
  // What the read saw already includes every change up to its revision.
  if (revision <= read_revision_) return;
  if (key == own_key_) {
    // Only a deletion after our entry was created is a deletion of it.
    if (revision > own_revision_) own_entry_deleted_ = true;
    return;
  }
  ahead_.erase(key);
}

}  // namespace etcdlock::detail
