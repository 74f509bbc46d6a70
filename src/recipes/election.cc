#include "etcdlock/election.h"

#include "base/text.h"
#include "etcdlock/error.h"
#include "observe/leader_observer.h"
#include "recipes/election_impl.h"

namespace etcdlock {

Observation::Observation(std::shared_ptr<detail::LeaderObserver> observer) : observer_(std::move(observer)) {}

Observation& Observation::operator=(Observation&& other) noexcept {
  if (this != &other) {
    stop();
    observer_ = std::move(other.observer_);
  }
  return *this;
}

Observation::~Observation() { stop(); }

void Observation::stop() noexcept {
  if (const auto observer = std::exchange(observer_, nullptr)) observer->stop();
}

Election::Election(std::shared_ptr<detail::ElectionImpl> impl) : impl_(std::move(impl)) {}

Election::~Election() = default;

void Election::campaign(std::string_view value) { campaign(value, std::stop_token()); }

void Election::campaign(std::string_view value, std::stop_token cancel) {
  // Without a deadline the campaign only ends by winning or throwing.
  (void)impl_->campaign(value, detail::SteadyTime::max(), std::move(cancel));
}

bool Election::campaign_until_steady(std::string_view value, detail::SteadyTime deadline, std::stop_token cancel) {
  return impl_->campaign(value, deadline, std::move(cancel));
}

bool Election::proclaim(std::string_view value) { return impl_->proclaim(value); }

void Election::async_campaign(std::string value, CampaignHandler handler, std::stop_token cancel) {
  async_campaign_until(std::move(value), std::chrono::steady_clock::time_point::max(), std::move(handler),
                       std::move(cancel));
}

void Election::async_campaign_until(std::string value, std::chrono::steady_clock::time_point deadline,
                                    CampaignHandler handler, std::stop_token cancel) {
  if (!handler) {
    throw Error(errc::invalid_argument,
                "async_campaign in election " + detail::quote_value(impl_->name()) + ": the handler is empty");
  }
  impl_->async_campaign(
      std::move(value), deadline, std::move(cancel),
      [handler = std::move(handler), impl = impl_](std::error_code ec, std::shared_ptr<detail::AsyncLeadership> state) {
        try {
          handler(ec, Leadership(std::move(state)));
        } catch (...) {
          impl->warn_handler_threw();
        }
      });
}
void Election::resign() noexcept { impl_->resign(); }
bool Election::is_leader() const { return impl_->is_leader(); }
std::stop_token Election::lost_token() const { return impl_->lost_token(); }
std::int64_t Election::fencing_token() const { return impl_->fencing_token(); }
bool Election::guarded_put(std::string_view key, std::string_view value) { return impl_->guarded_put(key, value); }
bool Election::guarded_delete(std::string_view key) { return impl_->guarded_delete(key); }
std::optional<LeaderInfo> Election::leader() { return impl_->leader(); }
const std::string& Election::name() const { return impl_->name(); }

Observation Election::observe(std::function<void(const std::optional<LeaderInfo>&)> on_change) {
  return Observation(impl_->observe(std::move(on_change)));
}

}  // namespace etcdlock
