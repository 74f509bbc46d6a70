#include "observe/catch_up.h"

#include <utility>

#include "etcdlock/error.h"

namespace etcdlock::detail {
namespace {

constexpr auto kReadRetryPause = std::chrono::milliseconds(200);

}  // namespace

bool CatchUp::take(std::span<const etcd::WatchEvent> events) {
  if (!reading_) return true;
  held_back_.insert(held_back_.end(), events.begin(), events.end());
  return false;
}

bool CatchUp::gap() {
  if (reading_) {
    read_again_ = true;
    return false;
  }
  reading_ = true;
  return true;
}

std::vector<etcd::WatchEvent> CatchUp::read_done(std::int64_t revision, bool& read_again) {
  read_revision_ = revision;
  read_again = std::exchange(read_again_, false);
  reading_ = read_again;
  return std::exchange(held_back_, {});
}

void read_on_worker(Worker& worker, std::function<void()> read, SteadyTime when) {
  worker.post_at(when, [&worker, read = std::move(read)] {
    try {
      read();
    } catch (const Error&) {
      read_on_worker(worker, read, SteadyClock::now() + kReadRetryPause);
    }
  });
}

}  // namespace etcdlock::detail
