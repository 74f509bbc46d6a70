// ElectionImpl: the state behind one named Election: which thread of this
// process is the candidate or leader, and its hold in etcd.
//
// A campaign is an ExclusiveHold's acquisition whose entry holds the proposal,
// as etcd's Go Election writes it; the leader is the first entry. Leadership
// is a Hold, so it ends (and its token fires) on the same causes as a lock's
// hold.
// Candidates write no hand-over notes (their values are proposals, not
// etcdlock's), so a new leader learns of its turn from its predecessor's
// deletion.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>

#include "etcdlock/election.h"
#include "etcdlock/options.h"
#include "queue/async_acquisition.h"
#include "queue/exclusive_hold.h"

namespace etcdlock::detail {

class LeaderObserver;
class ElectionImpl;

// What a Leadership owns: a leadership of the election, its turn taken.
struct AsyncLeadership {
  std::shared_ptr<ElectionImpl> election;
  std::shared_ptr<Hold> hold;
  std::atomic<bool> resigned{false};
};

// Thread-safe.
class ElectionImpl : public std::enable_shared_from_this<ElectionImpl> {
 public:
  ElectionImpl(std::shared_ptr<PrimitiveContext> context, std::string name, ElectionOptions options);
  // Resigns a leadership that was never resigned.
  ~ElectionImpl();

  // True when this thread leads; false at the deadline. Throws Error.
  bool campaign(std::string_view value, SteadyTime deadline, std::stop_token cancel);
  bool proclaim(std::string_view value);
  void resign() noexcept;

  // Asynchronous campaign (async_acquisition.h): `done` is called once, on a
  // notifier thread, with the leadership or an error.
  using AsyncDone = std::function<void(std::error_code, std::shared_ptr<AsyncLeadership>)>;
  void async_campaign(std::string value, SteadyTime deadline, std::stop_token cancel, AsyncDone done);
  // A Leadership's own calls, from any thread.
  bool proclaim(AsyncLeadership& leadership, std::string_view value);
  void resign(AsyncLeadership& leadership, std::error_code& ec) noexcept;
  ExclusiveHold& exclusive() { return exclusive_; }
  // Logs a warning: an asynchronous campaign's handler threw (the
  // leadership it held was resigned as the exception left it).
  void warn_handler_threw() const noexcept;

  bool is_leader() const { return exclusive_.held(); }
  std::stop_token lost_token() const { return exclusive_.lost_token(); }
  std::int64_t fencing_token() const { return exclusive_.fencing_token(); }
  bool guarded_put(std::string_view key, std::string_view value) { return exclusive_.guarded_put(key, value); }
  bool guarded_delete(std::string_view key) { return exclusive_.guarded_delete(key); }
  std::optional<LeaderInfo> leader() const;
  std::shared_ptr<LeaderObserver> observe(std::function<void(const std::optional<LeaderInfo>&)> on_change);

  const std::string& name() const { return exclusive_.named().name; }
  std::weak_ptr<const void> lifetime() const { return exclusive_.named().lifetime; }
  const ElectionOptions& options() const { return options_; }

 private:
  // Replaces the proposal of `hold`'s key, unless the key is gone (then the
  // hold is lost).
  bool proclaim(Hold& hold, std::string_view value);
  // Gives a leadership up in etcd (Hold::give_up): its key is deleted, or
  // removed in the background when etcd does not answer.
  std::error_code end_leadership(Hold& hold, bool in_doubt) noexcept;
  PrimitiveContext& context() const { return exclusive_.context(); }

  const ElectionOptions options_;
  ExclusiveHold exclusive_;  // the candidate's or leader's thread, and the leadership
};

}  // namespace etcdlock::detail
