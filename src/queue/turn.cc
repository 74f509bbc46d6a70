#include "queue/turn.h"

#include <algorithm>
#include <optional>
#include <vector>

#include "base/text.h"

namespace etcdlock::detail {
namespace {

// Wakes a thread waiting for a turn when the manager closes. It takes the
// turn's mutex first, so that the wake cannot fall between the waiter's check
// of closed() and its wait.
struct WakeOnClose {
  Mutex& mu;
  std::condition_variable_any& woken;
  void operator()() const {
    MutexLock lock(mu);
    woken.notify_all();
  }
};

}  // namespace

Turn::Turn(const PrimitiveContext& context, std::string_view kind, const std::string& name)
    : context_(context), kind_(kind), name_(name) {}

std::string Turn::what() const { return std::string(kind_) + " " + quote_value(name_); }

bool Turn::take(SteadyTime deadline, const std::stop_token& cancel, bool wait) {
  // The waiting thread's own condition variable, not one per turn: every
  // lock name has a turn, nearly always without a thread waiting for it.
  // Both are declared before the lock, so destroyed after it is released:
  // destroying a stop_callback waits for a run of it under way on the
  // closing thread, and that run takes mu_.
  std::optional<std::condition_variable_any> woken;
  std::optional<std::stop_callback<WakeOnClose>> on_closed;
  MutexLock lock(mu_);
  context_.check_open();
  if (!busy_ && waiters_.empty()) {
    busy_ = true;
    owner_ = std::this_thread::get_id();
    return true;
  }
  // Another holder of this process holds or is acquiring, or others wait first.
  if (!wait) return false;
  woken.emplace();
  const auto waiter = std::make_shared<Waiter>();
  waiter->id = next_id_++;
  waiter->thread = std::this_thread::get_id();
  waiter->woken = &*woken;
  waiters_.push_back(waiter);
  // close() wakes this wait. Registered without mu_, as a token requested
  // already runs the callback at once; a grant meanwhile is seen below.
  lock.unlock();
  on_closed.emplace(context_.closed_token(), WakeOnClose{mu_, *woken});
  lock.lock();
  const auto done = [&]() ETCDLOCK_REQUIRES(mu_) { return waiter->granted || context_.closed(); };
  if (deadline == SteadyTime::max()) {
    woken->wait(lock, cancel, done);
  } else {
    woken->wait_until(lock, cancel, deadline, done);
  }
  waiter->woken = nullptr;
  if (!waiter->granted) {
    std::erase(waiters_, waiter);
    context_.check_open();
    if (cancel.stop_requested()) throw Error(errc::cancelled, "the wait for " + what() + " was cancelled");
    return false;
  }
  if (context_.closed() || cancel.stop_requested()) {
    // Granted as the wait ended: pass it on, as if it had never come.
    lock.unlock();
    give_back();
    context_.check_open();
    throw Error(errc::cancelled, "the wait for " + what() + " was cancelled");
  }
  return true;
}

Turn::Ticket Turn::take_async(Grant grant) {
  MutexLock lock(mu_);
  if (!busy_ && waiters_.empty()) {
    busy_ = true;
    owner_ = {};
    return {true, 0};
  }
  const auto waiter = std::make_shared<Waiter>();
  waiter->id = next_id_++;
  waiter->grant = std::move(grant);
  waiters_.push_back(waiter);
  return {false, waiter->id};
}

bool Turn::withdraw(std::uint64_t id) {
  MutexLock lock(mu_);
  return std::erase_if(waiters_, [&](const auto& waiter) { return waiter->id == id; }) > 0;
}

void Turn::pass_on(std::vector<Grant>& granted) {
  while (!busy_ && !waiters_.empty()) {
    const auto next = waiters_.front();
    waiters_.pop_front();
    busy_ = true;
    if (next->grant) {
      owner_ = {};
      // The grant only posts work; called once mu_ is released, and if the
      // waiter is gone by then, the turn passes on from there.
      granted.push_back(next->grant);
    } else {
      owner_ = next->thread;
      next->granted = true;
      // Under mu_: the thread cannot leave its wait, and take() with it the
      // condition variable, before mu_ is released.
      next->woken->notify_one();
    }
  }
}

void Turn::give_back() {
  std::vector<Grant> granted;
  {
    MutexLock lock(mu_);
    busy_ = false;
    owner_ = {};
    pass_on(granted);
  }
  for (const auto& grant : granted) {
    if (!grant()) give_back();  // the waiter is gone: the turn it was given passes on
  }
}

bool Turn::owned_by_this_thread() const {
  MutexLock lock(mu_);
  return busy_ && owner_ == std::this_thread::get_id();
}

}  // namespace etcdlock::detail
