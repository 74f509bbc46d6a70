#include "etcd/watch_hub.h"

#include <algorithm>
#include <vector>

namespace etcdlock::detail::etcd {
namespace {

constexpr auto kMinReconnectPause = std::chrono::milliseconds(50);
constexpr auto kMaxReconnectPause = std::chrono::milliseconds(1000);

}  // namespace

WatchHub::WatchHub(const Client& client, const Logger& log) : client_(client), log_(log) {
  thread_ = std::thread([this] { run(); });
}

WatchHub::~WatchHub() { close(); }

void WatchHub::close() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::size_t WatchHub::size() const {
  std::lock_guard lock(mu_);
  return watchers_.size();
}

std::int64_t WatchHub::add(std::string key, std::string range_end, std::int64_t start_revision,
                           std::shared_ptr<WatchListener> listener, Events events) {
  std::lock_guard lock(mu_);
  const std::int64_t id = next_id_++;
  auto& watcher = watchers_[id];
  watcher.key = std::move(key);
  watcher.range_end = std::move(range_end);
  watcher.next_revision = start_revision;
  watcher.listener = std::move(listener);
  watcher.events = events;
  // Without an open stream, run() creates it when the stream opens.
  if (stream_ != nullptr) send_create(id, watcher);
  return id;
}

void WatchHub::remove(std::int64_t id) {
  std::lock_guard lock(mu_);
  if (watchers_.erase(id) > 0 && stream_ != nullptr) send_cancel(id);
}

void WatchHub::send_create(std::int64_t id, const Watcher& watcher) {
  pb::WatchRequest request;
  auto* create = request.mutable_create_request();
  create->set_key(watcher.key);
  create->set_range_end(watcher.range_end);
  create->set_start_revision(watcher.next_revision);
  create->set_watch_id(id);
  unanswered_creates_.push_back(id);
  if (watcher.events == Events::deletes_only) create->add_filters(pb::WatchCreateRequest::NOPUT);
  // A failed write means the stream is broken; run() re-creates every watcher.
  (void)stream_->Write(request);
}

void WatchHub::send_cancel(std::int64_t id) {
  pb::WatchRequest request;
  request.mutable_cancel_request()->set_watch_id(id);
  (void)stream_->Write(request);
}

void WatchHub::run() {
  auto pause = kMinReconnectPause;
  for (;;) {
    auto context = std::make_unique<grpc::ClientContext>();
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      context_ = context.get();
    }
    std::unique_ptr<WatchStream> stream;
    try {
      stream = client_.open_watch(*context);
    } catch (const Error& error) {  // authentication failed
      log_(LogLevel::warning, "cannot open the watch stream", {{"error", error.what()}});
      std::unique_lock lock(mu_);
      context_ = nullptr;
      wake_.wait_for(lock, kMaxReconnectPause, [&] { return closed_; });
      continue;
    }
    {
      std::lock_guard lock(mu_);
      stream_ = stream.get();
      unanswered_creates_.clear();
      for (const auto& [id, watcher] : watchers_) send_create(id, watcher);
    }
    pb::WatchResponse response;
    bool received = false;
    while (stream->Read(&response)) {
      received = true;
      dispatch(response);
    }
    {
      std::lock_guard lock(mu_);
      stream_ = nullptr;
    }
    const grpc::Status status = stream->Finish();
    client_.stream_ended(status);
    std::unique_lock lock(mu_);
    context_ = nullptr;
    if (closed_) return;
    if (received) pause = kMinReconnectPause;
    log_(LogLevel::info, "watch stream ended; reopening",
         {{"status", client_.error_from_status("Watch", status).what()}});
    wake_.wait_for(lock, pause, [&] { return closed_; });
    pause = std::min(pause * 2, std::chrono::duration_cast<std::chrono::milliseconds>(kMaxReconnectPause));
  }
}

void WatchHub::dispatch(const pb::WatchResponse& response) {
  std::shared_ptr<WatchListener> listener;
  enum class Kind { created, events, gap, failed } kind = Kind::events;
  std::int64_t start_revision = 0;
  {
    std::lock_guard lock(mu_);
    std::int64_t id = response.watch_id();
    if (response.created()) {
      // A refused create carries id -1: it is the oldest one unanswered.
      if (id < 0 && !unanswered_creates_.empty()) id = unanswered_creates_.front();
      std::erase(unanswered_creates_, id);
    }
    if (response.canceled() && response.cancel_reason().find("auth token") != std::string::npos) {
      // The stream's token went stale (etcd restarted): a new stream, with a
      // new token, re-creates every watcher.
      client_.stream_ended(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, response.cancel_reason()));
      if (context_ != nullptr) context_->TryCancel();
      return;
    }
    const auto found = watchers_.find(id);
    if (found == watchers_.end()) return;  // removed, or a broadcast we do not use
    Watcher& watcher = found->second;
    listener = watcher.listener;
    if (response.canceled() && (response.cancel_reason().find("permission denied") != std::string::npos ||
                                response.cancel_reason().find("user name is empty") != std::string::npos)) {
      // Re-creating it would be refused again, forever.
      log_(LogLevel::error, "etcd refused a watch", {{"key", watcher.key}, {"reason", response.cancel_reason()}});
      watchers_.erase(found);
      kind = Kind::failed;
    } else if (response.canceled()) {
      // The server dropped the watcher. Re-create it where delivery can go on;
      // past a compaction, the listener must read again.
      if (response.compact_revision() > 0) watcher.next_revision = response.compact_revision();
      log_(LogLevel::warning, "watch cancelled by etcd; re-creating it",
           {{"key", watcher.key}, {"reason", response.cancel_reason()},
            {"compact_revision", std::to_string(response.compact_revision())}});
      if (stream_ != nullptr) send_create(found->first, watcher);
      kind = Kind::gap;
    } else if (response.created()) {
      if (watcher.created) return;  // re-created after a reconnect: nothing new to tell
      watcher.created = true;
      // etcd starts a watch "from now" at the revision after its header's.
      if (watcher.next_revision == 0) watcher.next_revision = response.header().revision() + 1;
      start_revision = watcher.next_revision;
      kind = Kind::created;
    } else if (response.events_size() > 0) {
      watcher.next_revision = response.events(response.events_size() - 1).kv().mod_revision() + 1;
    } else {
      return;  // a progress notification
    }
  }
  switch (kind) {
    case Kind::created:
      listener->on_created(start_revision);
      if (response.events_size() == 0) return;
      break;
    case Kind::gap:
      listener->on_gap();
      return;
    case Kind::failed:
      listener->on_failed(response.cancel_reason());
      return;
    case Kind::events:
      break;
  }
  std::vector<WatchEvent> events;
  events.reserve(static_cast<std::size_t>(response.events_size()));
  for (const auto& event : response.events()) {
    events.push_back({event.type() == mvccpb::Event::DELETE, event.kv().key(), event.kv().create_revision(),
                      event.kv().mod_revision()});
  }
  listener->on_events(events);
}

}  // namespace etcdlock::detail::etcd
