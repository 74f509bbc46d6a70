#include "pending_deletes.h"

namespace etcdlock::detail {
namespace {

constexpr auto kRetryPause = std::chrono::milliseconds(200);

}  // namespace

void PendingDeletes::add(QueueEntry entry, std::int64_t lease_id, std::function<void()> done) {
  log_(LogLevel::warning, "could not delete a queue entry; retrying in the background", {{"key", entry.key}});
  worker_.post([this, entry = std::move(entry), lease_id, done = std::move(done)]() mutable {
    attempt(std::move(entry), lease_id, std::move(done));
  });
}

void PendingDeletes::attempt(QueueEntry entry, std::int64_t lease_id, std::function<void()> done) {
  if (try_delete(entry, lease_id)) {
    done();
    return;
  }
  worker_.post_at(SteadyClock::now() + kRetryPause,
                  [this, entry = std::move(entry), lease_id, done = std::move(done)]() mutable {
                    attempt(std::move(entry), lease_id, std::move(done));
                  });
}

bool PendingDeletes::try_delete(QueueEntry& entry, std::int64_t lease_id) const {
  const auto session = sessions_.latest();
  if (!session || session->lease_id() != lease_id || !session->alive()) return true;  // gone with its lease
  try {
    if (entry.revision == 0) {
      pb::RangeRequest read;
      read.set_key(entry.key);
      const auto found = client_.range(read, client_.command_deadline());
      if (found.kvs_size() == 0) return true;
      entry.revision = found.kvs(0).create_revision();
    }
    // Only the entry we left, never a later one under the same key.
    auto txn = while_created_at(entry.key, entry.revision);
    txn.add_success()->mutable_request_delete_range()->set_key(entry.key);
    client_.txn(txn, client_.command_deadline());
    return true;
  } catch (const Error& error) {
    if (error.value() == errc::unavailable) return false;
    log_(LogLevel::error, "could not delete a queue entry", {{"key", entry.key}, {"error", error.what()}});
    return true;
  }
}

}  // namespace etcdlock::detail
