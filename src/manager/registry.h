// Registry: the factory that gives every caller the same object for the same
// name, for as long as anyone holds it. One object per name is what makes
// reentrancy and the exclusion of a process's threads work. A name is one
// kind of thing at a time (a lock, an election): two kinds on one name would
// share one etcd key, this manager's entry in that name's queue.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>

#include "base/mutex.h"
#include "base/text.h"
#include "etcdlock/error.h"

namespace etcdlock::detail {

// Thread-safe.
class Registry {
 public:
  // The `Handle` named `name` (of kind `kind`: "lock", "election", a literal
  // that the registry keeps), made with `make` when no one holds one. Throws
  // Error(errc::invalid_argument) when the name is in use as another kind, or
  // with other options. `Impl` has options(), compared with `options`.
  template <class Handle, class Impl, class Options>
  std::shared_ptr<Handle> get(std::string_view kind, std::string_view name, const Options& options,
                              const std::function<std::shared_ptr<Impl>()>& make) {
    return get_with_state<Handle, Impl>(kind, name, options, make).first;
  }

  // As get(), with the state behind the handle (a MultiLock keeps the states
  // of its names' locks, whose turns it takes).
  template <class Handle, class Impl, class Options>
  std::pair<std::shared_ptr<Handle>, std::shared_ptr<Impl>> get_with_state(
      std::string_view kind, std::string_view name, const Options& options,
      const std::function<std::shared_ptr<Impl>()>& make) {
    for (;;) {
      // Declared before the lock, so destroyed after it is released: when the
      // last handle goes on another thread meanwhile, the state's destructor
      // (a release in etcd, the log sink) runs here, and not under mu_.
      std::shared_ptr<Impl> impl;
      MutexLock lock(mu_);
      auto& entry = entries_[std::string(name)];
      impl = std::static_pointer_cast<Impl>(entry.impl.lock());
      if (impl && entry.kind != kind) {
        throw Error(errc::invalid_argument, "name " + quote_value(name) + " names " + with_article(entry.kind) +
                                                " in this manager; it cannot also name " + with_article(kind));
      }
      // One state per name and kind, whatever the options: a state whose last
      // handle went may still hold (a Permit keeps its semaphore's state) or be
      // finishing, and a second state would not know what the first holds in
      // etcd. Other options wait until no one uses the name.
      if (impl && impl->options() != options) {
        const bool handles = !entry.handle.expired();
        throw Error(errc::invalid_argument, std::string(kind) + " " + quote_value(name) +
                                                " is already in use with other options" +
                                                (handles ? "" : " (what it holds has not been released yet)"));
      }
      if (auto existing = std::static_pointer_cast<Handle>(entry.handle.lock())) return {existing, impl};
      if (!impl && !entry.lifetime.expired()) {
        // The last state's destructor is still releasing what was never
        // unlocked, on this process's lease key: a new state would create
        // that key again, and the old release, if its reply is lost, retires
        // it (stray_entries.h) under the new hold. Wait for it to end; its
        // deadline is the command timeout.
        lock.unlock();
        std::this_thread::sleep_for(kFinishingPoll);
        continue;
      }
      if (!impl) impl = make();
      auto created = std::make_shared<Handle>(impl);
      entry = {kind, created, impl, impl->lifetime()};
      forget_unused();
      return {created, impl};
    }
  }

 private:
  static constexpr std::chrono::milliseconds kFinishingPoll{5};

  struct Entry {
    std::string_view kind;  // a literal
    std::weak_ptr<void> handle;
    std::weak_ptr<void> impl;
    std::weak_ptr<const void> lifetime;  // the impl's, destructor included
  };

  static std::string with_article(std::string_view kind) {
    const bool vowel = !kind.empty() && std::string_view("aeiou").find(kind.front()) != std::string_view::npos;
    return (vowel ? "an " : "a ") + std::string(kind);
  }

  // Now and then, forget the names no one uses any more.
  void forget_unused() ETCDLOCK_REQUIRES(mu_) {
    if (entries_.size() > 64 && entries_.size() % 64 == 0) {
      std::erase_if(entries_, [](const auto& item) { return item.second.lifetime.expired(); });
    }
  }

  Mutex mu_;
  std::unordered_map<std::string, Entry> entries_ ETCDLOCK_GUARDED_BY(mu_);
};

}  // namespace etcdlock::detail
