// Mutex and MutexLock: std::mutex with Clang's thread-safety annotations, as
// leveldb's port::Mutex and abseil's Mutex have them. A field marked
// ETCDLOCK_GUARDED_BY(mu_) and a function marked ETCDLOCK_REQUIRES(mu_) are checked by the
// compiler when Clang builds with -Wthread-safety (CI does), so the comments
// that say which mutex guards what cannot drift from the code. Other
// compilers see plain std::mutex.
//
// Condition variables are std::condition_variable_any waiting on a
// MutexLock; a wait's predicate is a lambda marked ETCDLOCK_REQUIRES(mu_), since it
// runs with the mutex held.
//
// The library's rules for its mutexes, in one place:
// - No request to etcd waits under a mutex: a slow or hung member must not
//   stall other threads of the process. Functions that call etcd are marked
//   ETCDLOCK_EXCLUDES(mu_) for their object's mutex, and the compiler checks
//   their callers.
// - Lock order follows the layers (scripts/check-layers): a mutex of a higher
//   layer may be held while one of a lower layer is taken, never the reverse
//   (manager, then recipes, then queue, then session, then etcd, then base).
//   Within the queue layer: a primitive's, then its ExclusiveHold's, then its
//   Turn's, then a Hold's.
// - No callback of the application (a lost token's, a listener's, an
//   observer's) runs under a mutex: they run on notifier threads, or, for a
//   loss that a call itself finds, in that call once it holds nothing
//   (Hold::signal_loss_now).
#pragma once

#include <mutex>

#if defined(__clang__)
#define ETCDLOCK_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define ETCDLOCK_THREAD_ANNOTATION(x)
#endif

#define ETCDLOCK_CAPABILITY(x) ETCDLOCK_THREAD_ANNOTATION(capability(x))
#define ETCDLOCK_SCOPED_CAPABILITY ETCDLOCK_THREAD_ANNOTATION(scoped_lockable)
#define ETCDLOCK_GUARDED_BY(x) ETCDLOCK_THREAD_ANNOTATION(guarded_by(x))
#define ETCDLOCK_REQUIRES(...) ETCDLOCK_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define ETCDLOCK_EXCLUDES(...) ETCDLOCK_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ETCDLOCK_ACQUIRE(...) ETCDLOCK_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define ETCDLOCK_RELEASE(...) ETCDLOCK_THREAD_ANNOTATION(release_capability(__VA_ARGS__))

namespace etcdlock::detail {

class ETCDLOCK_CAPABILITY("mutex") Mutex {
 public:
  void lock() ETCDLOCK_ACQUIRE() { mutex_.lock(); }
  void unlock() ETCDLOCK_RELEASE() { mutex_.unlock(); }

 private:
  std::mutex mutex_;
};

// Holds a Mutex for its scope. unlock() and lock() let a condition variable
// wait on it, and let a function drop the mutex around a call to etcd.
class ETCDLOCK_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mutex) ETCDLOCK_ACQUIRE(mutex) : mutex_(mutex) { mutex_.lock(); }
  ~MutexLock() ETCDLOCK_RELEASE() {
    if (locked_) mutex_.unlock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void lock() ETCDLOCK_ACQUIRE() {
    mutex_.lock();
    locked_ = true;
  }
  void unlock() ETCDLOCK_RELEASE() {
    locked_ = false;
    mutex_.unlock();
  }

 private:
  Mutex& mutex_;
  bool locked_ = true;
};

}  // namespace etcdlock::detail
