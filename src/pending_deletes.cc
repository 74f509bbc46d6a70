#include "pending_deletes.h"

#include "etcd/lost_replies.h"
#include "key_layout.h"

namespace etcdlock::detail {
namespace {

constexpr auto kRetryPause = std::chrono::milliseconds(200);

}  // namespace

void PendingDeletes::add(Removal removal, std::function<void()> done) {
  log_(LogLevel::warning, "could not delete a queue entry; retrying in the background", {{"key", removal.key}});
  {
    MutexLock lock(mu_);
    pending_.insert(removal.key);
  }
  worker_.post([this, removal = std::make_shared<Removal>(std::move(removal)), done = std::move(done)]() mutable {
    attempt(std::move(removal), std::move(done));
  });
}

bool PendingDeletes::pending_in(std::string_view dir) const {
  MutexLock lock(mu_);
  for (auto key = pending_.lower_bound(std::string(dir)); key != pending_.end() && key->starts_with(dir); ++key) {
    if (is_queue_entry(dir, *key)) return true;
  }
  return false;
}

void PendingDeletes::attempt(std::shared_ptr<Removal> removal, std::function<void()> done) {
  if (try_remove(*removal)) {
    {
      MutexLock lock(mu_);
      pending_.erase(pending_.find(removal->key));
    }
    done();
    return;
  }
  worker_.post_at(SteadyClock::now() + kRetryPause, [this, removal, done = std::move(done)]() mutable {
    attempt(std::move(removal), std::move(done));
  });
}

bool PendingDeletes::try_remove(const Removal& removal) const {
  const auto session = sessions_.latest();
  if (!session || session->lease_id() != removal.lease_id || !session->alive()) return true;  // gone with its lease
  try {
    client_.txn(removal.txn, client_.command_deadline(), etcd::write_site::removal);
    return true;
  } catch (const Error& error) {
    if (error.value() == errc::unavailable) return false;
    log_(LogLevel::error, "could not delete a queue entry", {{"key", removal.key}, {"error", error.what()}});
    return true;
  }
}

}  // namespace etcdlock::detail
