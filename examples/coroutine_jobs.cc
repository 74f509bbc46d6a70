// Jobs under per-job locks, as coroutines: one thread runs every job, and a
// job that waits for its lock costs no thread. Each job takes its lock with
// co_await, checks that the hold still stands before each step, and writes
// its result guarded by the hold, so a job whose hold was lost cannot
// overwrite the work of the next holder.
#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <chrono>
#include <iostream>
#include <string>

#include "etcdlock/asio.h"
#include "etcdlock/etcdlock.h"
#include "example_options.h"

namespace {

asio::awaitable<void> run_job(etcdlock::LockManager& manager, std::string job, int run) {
  auto lock = manager.get_lock("job/" + job);
  // Waits in the lock's FIFO queue; the thread runs other jobs meanwhile.
  etcdlock::LockHold hold = co_await etcdlock::asio::async_lock(*lock, asio::use_awaitable);
  std::cout << job << " run " << run << ": started, fencing token " << hold.fencing_token() << "\n";
  asio::steady_timer step(co_await asio::this_coro::executor);
  for (int i = 0; i < 3; ++i) {
    if (!hold.held()) {  // lost (lease expired, key deleted): stop at once
      std::cout << job << " run " << run << ": lost the lock, stopping\n";
      co_return;
    }
    step.expires_after(std::chrono::milliseconds(50));
    co_await step.async_wait(asio::use_awaitable);
  }
  // Committed only while the hold stands.
  const bool saved = hold.guarded_put("/myapp/results/" + job, "run " + std::to_string(run));
  std::cout << job << " run " << run << ": " << (saved ? "saved" : "not saved: the hold was lost") << "\n";
}  // the hold is released here, and the next run of the job starts

}  // namespace

int main() try {
  etcdlock::LockManager manager(example_options());
  asio::io_context io;
  // Two runs of each job ask at once: each job's runs take turns, the jobs
  // run side by side, all on this one thread.
  for (const std::string job : {"report", "cleanup", "backup"}) {
    for (int run = 1; run <= 2; ++run) {
      asio::co_spawn(io, run_job(manager, job, run), [job](std::exception_ptr failure) {
        if (!failure) return;
        try {
          std::rethrow_exception(failure);
        } catch (const std::exception& error) {
          std::cerr << job << ": " << error.what() << "\n";
        }
      });
    }
  }
  io.run();
  return 0;
} catch (const etcdlock::Error& error) {
  std::cerr << error.what() << "\n";
  return 1;
}
