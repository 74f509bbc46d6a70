// Where locks live in etcd.
//
// A lock named N under prefix P is the set of keys "P/N/<lease id in hex>": the
// queue of its holder and waiters, ordered by create revision. This is the
// layout of etcd's own lock recipe, so all users of it exclude one another.
//
// Names nest: the keys of "N/b" lie under "P/N/" too. etcd's recipe (Go's
// Mutex and Election, `etcdctl lock` and `elect`) counts every key under a
// directory as an entry of its queue, and so does etcdlock, so that the tools
// never disagree about who holds a name: "N" waits for the older entries of
// "N/b", while "N/b" does not wait for "N" (its directory holds no key of N).
//
// Each manager also has an inbox, "P/\0inbox/<manager id in hex>", where a
// releasing holder leaves a note for its successor (see hand_over.h). The NUL
// byte, which no lock name may contain, keeps it out of every lock's queue
// under P. Where prefixes nest (a manager on "P/jobs" beside the lock "jobs"
// on P) it lies under an outer name's directory. Go's Mutex and etcdctl
// count it as an entry there (the inbox deletes it when idle); etcdlock does
// not: nobody holds a name through it, and it stays as long as its manager
// has a waiter, which could hold the outer name back for good.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace etcdlock::detail {

// "<prefix>/<name>/": the directory of one lock's queue.
std::string queue_dir(std::string_view prefix, std::string_view name);

// The directory of the queue that the entry `key` is in: `key` up to its
// last '/' (entry suffixes have none).
std::string queue_dir_of_entry(std::string_view key);

// The key of a lease's entry in a queue: the directory and the lease id in
// lowercase hex, as etcd's Go recipe writes it.
std::string queue_key(std::string_view dir, std::int64_t lease_id);

// True when `key` is an entry of the name whose queue is `dir` itself, not one
// of a name that extends it ("a" against "a/b"). Every key under `dir` counts
// in the queue's order (see above); this tells which entries are the name's
// own: those a hand-over note may address, and whose values a semaphore checks.
bool is_own_entry(std::string_view dir, std::string_view key);

// True when `key` is a manager's inbox (see above), under whichever
// directory it lies: no entry of any queue.
bool is_inbox_key(std::string_view key);

// The name of the lock whose queue entry `key` is, when it is one under
// `prefix`; nullopt for other keys (an inbox, a foreign key).
std::optional<std::string_view> lock_name_of(std::string_view prefix, std::string_view key);

// The end of the range of every key starting with `prefix`, as etcd means it.
std::string prefix_range_end(std::string_view prefix);

// The inbox of the manager `manager_id` under `prefix`.
std::string inbox_key(std::string_view prefix, std::uint64_t manager_id);
// True when `inbox` is an inbox key under a prefix that contains `dir`: a
// holder writes a note only there, whatever a waiter's value claims.
bool is_inbox_key_for(std::string_view dir, std::string_view inbox);

}  // namespace etcdlock::detail
