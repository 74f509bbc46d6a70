#include "recipes/election_impl.h"

#include "base/text.h"
#include "etcd/lost_replies.h"
#include "keys/key_layout.h"
#include "observe/leader_observer.h"
#include "queue/guarded_write.h"
#include "queue/queue_acquisition.h"

namespace etcdlock::detail {

ElectionImpl::ElectionImpl(std::shared_ptr<PrimitiveContext> context, std::string name, ElectionOptions options)
    : options_(options), exclusive_(std::move(context), "election", std::move(name), "leadership") {}

ElectionImpl::~ElectionImpl() {
  // No other reference exists, so no thread can be inside a member function.
  auto [hold, in_doubt] = exclusive_.take();
  if (!hold) return;
  if (!hold->lost() && !context().closed()) {
    context().log()(LogLevel::warning, "election destroyed while leading; resigning",
                    {{"name", name()}, {"key", hold->entry().key}});
  }
  end_leadership(*hold, in_doubt);
}

bool ElectionImpl::campaign(std::string_view value, SteadyTime deadline, std::stop_token cancel) {
  context().check_open();
  if (exclusive_.turn_owned_by_this_thread()) {
    if (exclusive_.held()) {
      // Leading already: as etcd's Go Election, campaigning again proclaims.
      if (proclaim(value)) return true;
    }
    // The leadership is lost: acknowledge it, and campaign anew.
    if (auto [lost, in_doubt] = exclusive_.take(); lost) {
      end_leadership(*lost, in_doubt);
      exclusive_.give_back_turn();
      lost->signal_loss_now();
    }
  }
  if (!exclusive_.take_turn(deadline, cancel, /*wait=*/true)) return false;
  ExclusiveHold::Outcome outcome;
  try {
    outcome = exclusive_.acquire({std::string(value), "", Admission::exclusive(), {}, false},
                                 {options_.retry_interval, options_.max_retries, options_.max_retry_interval}, deadline,
                                 cancel, QueueWait::Mode::wait);
  } catch (...) {
    exclusive_.give_back_turn();
    throw;
  }
  if (!outcome.held) {
    exclusive_.give_back_turn();
    return false;
  }
  context().log()(LogLevel::info, "elected", {{"name", name()}, {"key", outcome.key}});
  return true;
}

bool ElectionImpl::proclaim(std::string_view value) {
  context().check_open();
  const auto hold = exclusive_.hold();
  if (!hold) return false;
  return proclaim(*hold, value);
}

bool ElectionImpl::proclaim(Hold& hold, std::string_view value) {
  if (hold.lost()) return false;
  auto txn = while_created_at(hold.entry().key, hold.entry().revision);
  auto* put = txn.add_success()->mutable_request_put();
  put->set_key(hold.entry().key);
  put->set_value(std::string(value));
  put->set_lease(hold.lease_id());
  bool still_leader = false;
  try {
    still_leader =
        context().client().txn(txn, context().client().command_deadline(), etcd::write_site::proclaim).succeeded();
  } catch (const etcd::LeaseNotFound&) {
    // The lease is gone, and the leader's key with it.
  }
  if (!still_leader) hold.lose(LossCause::deleted);
  return still_leader;
}

void ElectionImpl::async_campaign(std::string value, SteadyTime deadline, std::stop_token cancel, AsyncDone done) {
  QueueWait::Entry entry{std::move(value), "", Admission::exclusive(), {}, false};
  exclusive_.async_acquire(
      std::move(entry), {options_.retry_interval, options_.max_retries, options_.max_retry_interval},
      shared_from_this(), deadline, std::move(cancel),
      [self = shared_from_this(), done = std::move(done)](AsyncAcquisition::Outcome outcome) {
        if (!outcome.acquired()) return done(outcome.error, nullptr);
        // The turn is ours (the acquisition kept it) until the Leadership resigns.
        self->exclusive_.adopt(outcome.hold(), outcome.in_doubt);
        self->context().log()(LogLevel::info, "elected",
                              {{"name", self->name()}, {"key", outcome.key}, {"by", "asynchronous campaign"}});
        auto state = std::make_shared<AsyncLeadership>();
        state->election = self;
        state->hold = std::move(outcome.hold());
        done({}, std::move(state));
      });
}

void ElectionImpl::warn_handler_threw() const noexcept {
  try {
    context().log()(LogLevel::warning, "the handler of an asynchronous campaign threw; ignored", {{"name", name()}});
  } catch (...) {  // nothing to report it to
  }
}

bool ElectionImpl::proclaim(AsyncLeadership& leadership, std::string_view value) {
  context().check_open();
  if (leadership.resigned.load()) return false;
  return proclaim(*leadership.hold, value);
}

void ElectionImpl::resign(AsyncLeadership& leadership, std::error_code& ec) noexcept {
  ec.clear();
  if (leadership.resigned.exchange(true)) {
    ec = make_error_code(errc::lock_not_held);
    return;
  }
  // From here on this process does not lead, whatever etcd answers.
  auto [hold, in_doubt] = exclusive_.take_if(leadership.hold);
  if (!hold) {  // cannot happen: the turn kept it this leadership's
    ec = make_error_code(errc::lock_not_held);
    return;
  }
  ec = end_leadership(*hold, in_doubt);
  if (!ec) context().log()(LogLevel::info, "resigned", {{"name", name()}, {"key", hold->entry().key}});
  exclusive_.give_back_turn();
  hold->signal_loss_now();  // with the turn given back: a loss callback may campaign again
}

void ElectionImpl::resign() noexcept {
  // From here on this process does not lead, whatever etcd answers.
  auto [hold, in_doubt] = exclusive_.take();
  if (!hold) return;
  const std::error_code ec = end_leadership(*hold, in_doubt);
  if (!ec) context().log()(LogLevel::info, "resigned", {{"name", name()}, {"key", hold->entry().key}});
  exclusive_.give_back_turn();
  hold->signal_loss_now();  // with the turn given back: a loss callback may campaign again
}

std::error_code ElectionImpl::end_leadership(Hold& hold, bool in_doubt) noexcept {
  std::error_code ec;
  hold.give_up(
      [&] {
        auto txn = while_created_at(hold.entry().key, hold.entry().revision);
        txn.add_success()->mutable_request_delete_range()->set_key(hold.entry().key);
        return context().client().txn(txn, context().client().command_deadline(), etcd::write_site::resign).succeeded();
      },
      in_doubt, ec);
  return ec;
}

std::optional<LeaderInfo> ElectionImpl::leader() const {
  context().check_open();
  // The oldest key under the directory leads, also one of a longer name
  // ("e/0" under "e"), as Go's Election and `etcdctl elect` see it; but not
  // the inbox of a manager on a nested prefix (see keys/key_layout.h). Such
  // keys may come first: read on, page after page in the first page's
  // revision, until another key or the end.
  auto range = queue_range(exclusive_.named().queue);
  range.set_keys_only(false);
  range.set_limit(kQueuePage);
  for (;;) {
    const auto response = context().client().range(range, context().client().command_deadline());
    for (const auto& kv : response.kvs()) {
      if (!is_inbox_key(kv.key())) return LeaderInfo{kv.key(), kv.value(), kv.lease(), kv.create_revision()};
    }
    if (!response.more() || response.kvs_size() == 0) return std::nullopt;
    range.set_revision(response.header().revision());
    range.set_min_create_revision(response.kvs(response.kvs_size() - 1).create_revision() + 1);
  }
}

std::shared_ptr<LeaderObserver> ElectionImpl::observe(std::function<void(const std::optional<LeaderInfo>&)> on_change) {
  context().check_open();
  auto observer =
      std::make_shared<LeaderObserver>(exclusive_.named().context, exclusive_.named().queue, std::move(on_change));
  observer->start();
  return observer;
}

}  // namespace etcdlock::detail
