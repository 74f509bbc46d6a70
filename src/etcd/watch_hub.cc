#include "etcd/watch_hub.h"

#include <algorithm>
#include <vector>

#include "base/thread_name.h"

namespace etcdlock::detail::etcd {
namespace {

constexpr auto kMinReconnectPause = std::chrono::milliseconds(50);
constexpr auto kMaxReconnectPause = std::chrono::milliseconds(1000);

bool is_refusal(const std::string& reason) {
  return reason.find("permission denied") != std::string::npos ||
         reason.find("user name is empty") != std::string::npos;
}

}  // namespace

// What one response means for one listener, worked out under the hub's mutex
// and delivered outside it.
struct WatchHub::Delivery {
  enum class Kind { nothing, created, events, gap, failed } kind = Kind::nothing;
  std::shared_ptr<WatchListener> listener;
  std::int64_t start_revision = 0;
};

WatchHub::WatchHub(const Client& client, const Logger& log) : client_(client), log_(log) {
  thread_ = std::thread([this] {
    name_this_thread("watch");
    run();
  });
}

WatchHub::~WatchHub() { close(); }

void WatchHub::close() {
  {
    MutexLock lock(mu_);
    closed_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::size_t WatchHub::size() const {
  MutexLock lock(mu_);
  return watchers_.size();
}

std::uint64_t WatchHub::streams_opened() const {
  MutexLock lock(mu_);
  return streams_opened_;
}

bool WatchHub::reading() const {
  MutexLock lock(mu_);
  return reading_;
}

bool WatchHub::must_read() const {
  return prompt_watchers_ > 0 || demands_ > 0 || !unanswered_creates_.empty() || progress_answered_ < drained_up_to_ ||
         write_failed_;
}

void WatchHub::drain() {
  {
    MutexLock lock(mu_);
    if (stream_ == nullptr) return;  // a new stream makes every watcher again, and reads until they are in place
    send_progress_request();
    drained_up_to_ = progress_sent_;
  }
  wake_.notify_all();
}

void WatchHub::send_progress_request() {
  pb::WatchRequest request;
  request.mutable_progress_request();
  if (stream_->Write(request)) {
    ++progress_sent_;
  } else {
    write_failed_ = true;
  }
}

void WatchHub::demand() {
  {
    MutexLock lock(mu_);
    ++demands_;
  }
  wake_.notify_all();
}

void WatchHub::end_demand() {
  MutexLock lock(mu_);
  if (demands_ > 0) --demands_;
  stop_reading_soon();
}

void WatchHub::stop_reading_soon() {
  // The thread waits in Read() for a response that may not come for minutes
  // (etcd's progress notifications), taking its turns at gRPC's polling all
  // the while. A progress request gets it one: then it stops reading.
  if (!reading_ || nudged_ || must_read() || stream_ == nullptr) return;
  nudged_ = true;
  send_progress_request();
}

std::int64_t WatchHub::add(std::string key, std::string range_end, std::int64_t start_revision,
                           std::shared_ptr<WatchListener> listener, Events events, Urgency urgency) {
  std::int64_t handle = 0;
  {
    MutexLock lock(mu_);
    handle = next_handle_++;
    auto& watcher = watchers_[handle];
    watcher.key = std::move(key);
    watcher.range_end = std::move(range_end);
    watcher.next_revision = start_revision;
    watcher.listener = std::move(listener);
    watcher.events = events;
    watcher.urgency = urgency;
    if (urgency == Urgency::prompt) ++prompt_watchers_;
    // Without an open stream, run() creates it when the stream opens.
    if (stream_ != nullptr) send_create(handle, watcher);
  }
  wake_.notify_all();  // the creation is read at once
  return handle;
}

void WatchHub::remove(std::int64_t handle) {
  MutexLock lock(mu_);
  const auto found = watchers_.find(handle);
  if (found == watchers_.end()) return;
  const bool cancel = found->second.wire_id != 0 && stream_ != nullptr;
  if (found->second.wire_id != 0) by_wire_.erase(found->second.wire_id);
  if (cancel) send_cancel(found->second.wire_id);
  erase(found);
  // etcd answers a cancel, and a thread that waits in Read() only for this
  // watcher stops reading then; without one, nothing may come.
  if (!cancel) stop_reading_soon();
}

void WatchHub::erase(std::map<std::int64_t, Watcher>::iterator watcher) {
  if (watcher->second.urgency == Urgency::prompt) --prompt_watchers_;
  watchers_.erase(watcher);
}

void WatchHub::send_create(std::int64_t handle, Watcher& watcher) {
  watcher.wire_id = next_wire_id_++;
  by_wire_[watcher.wire_id] = handle;
  unanswered_creates_.push_back(watcher.wire_id);
  pb::WatchRequest request;
  auto* create = request.mutable_create_request();
  create->set_key(watcher.key);
  create->set_range_end(watcher.range_end);
  create->set_start_revision(watcher.next_revision);
  create->set_watch_id(watcher.wire_id);
  create->set_progress_notify(true);
  if (watcher.events == Events::deletes_only) create->add_filters(pb::WatchCreateRequest::NOPUT);
  if (watcher.events == Events::puts_only) create->add_filters(pb::WatchCreateRequest::NODELETE);
  // A failed write means the stream is broken: run() re-creates every
  // watcher once the reader notices.
  if (!stream_->Write(request)) write_failed_ = true;
}

void WatchHub::send_cancel(std::int64_t wire_id) {
  pb::WatchRequest request;
  request.mutable_cancel_request()->set_watch_id(wire_id);
  if (!stream_->Write(request)) write_failed_ = true;
}

void WatchHub::run() {
  auto pause = kMinReconnectPause;
  for (;;) {
    auto context = std::make_unique<grpc::ClientContext>();
    {
      MutexLock lock(mu_);
      if (closed_) return;
      context_ = context.get();
    }
    std::unique_ptr<WatchStream> stream;
    try {
      stream = client_.open_watch(*context);
    } catch (const Error& error) {  // authentication failed
      log_(LogLevel::warning, "cannot open the watch stream", {{"error", error.what()}});
      MutexLock lock(mu_);
      context_ = nullptr;
      wake_.wait_for(lock, kMaxReconnectPause, [&]() ETCDLOCK_REQUIRES(mu_) { return closed_; });
      continue;
    }
    const auto opened = std::chrono::steady_clock::now();
    serve(*stream);
    const grpc::Status status = stream->Finish();
    client_.stream_ended(*context, status);
    MutexLock lock(mu_);
    context_ = nullptr;
    if (closed_) return;
    log_(LogLevel::info, "watch stream ended; reopening",
         {{"status", client_.error_from_status("Watch", status).what()}});
    // A stream that lived a while is reopened at once: it may have broken
    // while nobody read it, and someone reads now (a waiter awaits its note).
    // One that failed at once backs off.
    if (std::chrono::steady_clock::now() - opened > kMaxReconnectPause) {
      pause = kMinReconnectPause;
      continue;
    }
    wake_.wait_for(lock, pause, [&]() ETCDLOCK_REQUIRES(mu_) { return closed_; });
    pause = std::min(pause * 2, std::chrono::duration_cast<std::chrono::milliseconds>(kMaxReconnectPause));
  }
}

void WatchHub::serve(WatchStream& stream) {
  {
    MutexLock lock(mu_);
    stream_ = &stream;
    ++streams_opened_;
    unanswered_creates_.clear();
    progress_sent_ = progress_answered_ = drained_up_to_ = 0;
    write_failed_ = false;
    by_wire_.clear();
    for (auto& [handle, watcher] : watchers_) {
      // An on-demand watcher made again from where it was would wait for
      // etcd to catch it up (a loop every 100 ms) while a waiter may await
      // it: it starts from now instead, and its listener hears of a gap.
      if (watcher.urgency == Urgency::on_demand && watcher.created) {
        watcher.next_revision = 0;
        watcher.gap_when_created = true;
      }
      send_create(handle, watcher);
    }
  }
  pb::WatchResponse response;
  for (;;) {
    {
      MutexLock lock(mu_);
      reading_ = false;
      wake_.wait(lock, [&]() ETCDLOCK_REQUIRES(mu_) { return closed_ || must_read(); });
      if (closed_) break;
      reading_ = true;
      nudged_ = false;
    }
    if (!stream.Read(&response)) break;
    Delivery delivery;
    {
      MutexLock lock(mu_);
      delivery = route(response);
    }
    switch (delivery.kind) {
      case Delivery::Kind::nothing:
        continue;
      case Delivery::Kind::gap:
        delivery.listener->on_gap();
        continue;
      case Delivery::Kind::failed:
        delivery.listener->on_failed(response.cancel_reason());
        continue;
      case Delivery::Kind::created:
        delivery.listener->on_created(delivery.start_revision);
        if (response.events_size() == 0) continue;
        break;
      case Delivery::Kind::events:
        break;
    }
    std::vector<WatchEvent> events;
    events.reserve(static_cast<std::size_t>(response.events_size()));
    for (const auto& event : response.events()) {
      const bool deleted = event.type() == mvccpb::Event::DELETE;
      events.push_back({deleted, event.kv().key(), deleted ? std::string() : event.kv().value(),
                        event.kv().create_revision(), event.kv().mod_revision(), event.kv().lease()});
    }
    delivery.listener->on_events(events);
  }
  MutexLock lock(mu_);
  stream_ = nullptr;
  reading_ = false;
}

WatchHub::Delivery WatchHub::route(const pb::WatchResponse& response) {
  std::int64_t wire_id = response.watch_id();
  if (response.created()) {
    // A refused create carries id -1: it is the oldest one unanswered.
    if (wire_id < 0 && !unanswered_creates_.empty()) wire_id = unanswered_creates_.front();
    std::erase(unanswered_creates_, wire_id);
  }
  if (response.canceled() && response.cancel_reason().find("auth token") != std::string::npos) {
    // The stream's token went stale (etcd restarted): a new stream, with a
    // new token, re-creates every watcher.
    if (context_ != nullptr) context_->TryCancel();
    return {};
  }
  if (wire_id == -1 && !response.created() && !response.canceled() && response.events_size() == 0) {
    // The answer to a progress request of ours: they are answered in order.
    ++progress_answered_;
    return {};
  }
  const auto by_wire = by_wire_.find(wire_id);
  if (by_wire == by_wire_.end()) return {};  // removed
  const auto found = watchers_.find(by_wire->second);
  if (found == watchers_.end()) return {};
  const std::int64_t handle = found->first;
  Watcher& watcher = found->second;
  Delivery delivery;
  delivery.listener = watcher.listener;
  if (response.canceled()) {
    by_wire_.erase(by_wire);
    watcher.wire_id = 0;
    if (is_refusal(response.cancel_reason()) || response.compact_revision() <= 0) {
      // Refused, or dropped for a reason a re-create would meet again.
      log_(LogLevel::error, "etcd ended a watch", {{"key", watcher.key}, {"reason", response.cancel_reason()}});
      erase(found);
      delivery.kind = Delivery::Kind::failed;
      return delivery;
    }
    // Compacted past the resume revision. etcd keeps the old id registered
    // on this stream: release it, and go on from the oldest revision left
    // under a new id.
    log_(LogLevel::info, "watch resumed past a compaction",
         {{"key", watcher.key}, {"compact_revision", std::to_string(response.compact_revision())}});
    if (stream_ != nullptr) send_cancel(wire_id);
    watcher.next_revision = response.compact_revision();
    if (stream_ != nullptr) send_create(handle, watcher);
    delivery.kind = Delivery::Kind::gap;
    return delivery;
  }
  if (response.created()) {
    if (watcher.gap_when_created) {
      watcher.gap_when_created = false;
      watcher.next_revision = response.header().revision() + 1;
      delivery.kind = Delivery::Kind::gap;
      return delivery;
    }
    if (watcher.created) return {};  // re-created after a reconnect: nothing new to tell
    watcher.created = true;
    // etcd starts a watch "from now" at the revision after its header's.
    if (watcher.next_revision == 0) watcher.next_revision = response.header().revision() + 1;
    delivery.kind = Delivery::Kind::created;
    delivery.start_revision = watcher.next_revision;
    return delivery;
  }
  if (response.events_size() > 0) {
    watcher.next_revision = response.events(response.events_size() - 1).kv().mod_revision() + 1;
    delivery.kind = Delivery::Kind::events;
    return delivery;
  }
  // This watcher's own progress notification: etcd sends it only while the
  // watcher is in sync, after every event up to the header's revision.
  watcher.next_revision = std::max(watcher.next_revision, response.header().revision() + 1);
  return {};
}

}  // namespace etcdlock::detail::etcd
