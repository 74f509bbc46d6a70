// A WatchListener that records what it is told, for tests.
#pragma once

#include <mutex>
#include <vector>

#include "etcd/watch_hub.h"

namespace etcdlock::testing {

class RecordingListener : public detail::etcd::WatchListener {
 public:
  void on_created(std::int64_t start_revision) override {
    std::lock_guard lock(mu_);
    start_revision_ = start_revision;
  }
  void on_events(std::span<const detail::etcd::WatchEvent> events) override {
    std::lock_guard lock(mu_);
    events_.insert(events_.end(), events.begin(), events.end());
  }
  void on_gap() override {
    std::lock_guard lock(mu_);
    ++gaps_;
  }
  void on_failed(const std::string&) override {}
  std::int64_t start_revision() const {
    std::lock_guard lock(mu_);
    return start_revision_;
  }
  std::vector<detail::etcd::WatchEvent> events() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  int gaps() const {
    std::lock_guard lock(mu_);
    return gaps_;
  }
  bool saw_delete_of(const std::string& key) const {
    std::lock_guard lock(mu_);
    for (const auto& event : events_) {
      if (event.deleted && event.key == key) return true;
    }
    return false;
  }

 private:
  mutable std::mutex mu_;
  std::int64_t start_revision_ = 0;
  std::vector<detail::etcd::WatchEvent> events_;
  int gaps_ = 0;
};

}  // namespace etcdlock::testing
