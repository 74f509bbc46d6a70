#include "observe/deadlocks.h"

#include <algorithm>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>

#include "keys/holder_value.h"
#include "keys/key_layout.h"
#include "queue/admission.h"

namespace etcdlock::detail {
namespace {

struct Entry {
  const PrefixEntry* source;
  EntryRule rule;
  bool holds = false;
  // An entry of this queue's name. The queue of "a" also holds the entries of
  // longer names ("a/b"), as in etcd's recipe (keys/key_layout.h): they hold
  // the entries of "a" back, but wait in their own queue only.
  bool own = true;
};

struct Queue {
  std::string_view name;
  std::vector<Entry> entries;  // oldest first
};

using Leases = std::set<std::int64_t>;
// The waiting entries of each lease (never 0), as (queue, index), in name order.
using Waits = std::map<std::int64_t, std::vector<std::pair<const Queue*, std::size_t>>>;

// Why one lease waits for another: the first name, in name order, where an
// entry of the first is held back by an entry of the second.
struct Edge {
  std::string_view name;
  const Entry* waiter = nullptr;
  bool holding = false;  // whether the second's entry there holds
};
using Graph = std::map<std::int64_t, std::map<std::int64_t, Edge>>;

std::vector<Queue> queues_of(std::string_view prefix, std::span<const PrefixEntry> entries) {
  std::map<std::string_view, std::vector<Entry>> by_name;
  for (const auto& entry : entries) {
    if (const auto name = lock_name_of(prefix, entry.key)) by_name[*name].push_back({&entry, entry_rule(entry.value)});
  }
  for (const auto& entry : entries) {
    const auto name = lock_name_of(prefix, entry.key);
    if (!name) continue;
    for (auto slash = name->find('/'); slash != std::string_view::npos; slash = name->find('/', slash + 1)) {
      const auto enclosing = by_name.find(name->substr(0, slash));
      if (enclosing != by_name.end()) enclosing->second.push_back({&entry, entry_rule(entry.value), false, false});
    }
  }
  std::vector<Queue> queues;
  for (auto& [name, list] : by_name) {
    std::sort(list.begin(), list.end(), [](const Entry& a, const Entry& b) {
      return std::tie(a.source->create_revision, a.source->key) < std::tie(b.source->create_revision, b.source->key);
    });
    std::int64_t exclusive_ahead = 0;
    for (std::size_t i = 0; i < list.size(); ++i) {
      list[i].holds = admitted_behind(list[i].rule, static_cast<std::int64_t>(i), exclusive_ahead);
      if (!list[i].rule.reader) ++exclusive_ahead;
    }
    queues.push_back({name, std::move(list)});
  }
  return queues;
}

// Whether entry `index` of `queue` would be admitted were the entries of the
// `gone` leases and of its own lease not there; `blockers`, when given, gets
// the entries that would still hold it back.
bool admitted_without(const Queue& queue, std::size_t index, const Leases& gone,
                      std::vector<const Entry*>* blockers = nullptr) {
  const auto& waiter = queue.entries[index];
  std::int64_t ahead = 0, exclusive_ahead = 0;
  for (std::size_t i = 0; i < index; ++i) {
    const auto& entry = queue.entries[i];
    const auto lease = entry.source->lease;
    if (lease == waiter.source->lease || gone.contains(lease)) continue;
    ++ahead;
    if (!entry.rule.reader) ++exclusive_ahead;
    // A reader is held back by the writers ahead only; others by every entry ahead.
    if (blockers && !(waiter.rule.reader && entry.rule.reader && waiter.rule.limit == 0)) blockers->push_back(&entry);
  }
  return admitted_behind(waiter.rule, ahead, exclusive_ahead);
}

// The leases that cannot go: those left once every lease that can has gone.
Leases stuck_leases(const std::vector<Queue>& queues, const Waits& waits) {
  Leases gone;
  for (const auto& queue : queues) {
    for (const auto& entry : queue.entries) {
      const auto lease = entry.source->lease;
      if (lease != 0 && !waits.contains(lease)) gone.insert(lease);
    }
  }
  Leases stuck;
  for (const auto& [lease, entries] : waits) stuck.insert(lease);
  for (bool progress = true; progress;) {
    progress = false;
    for (auto it = stuck.begin(); it != stuck.end();) {
      const auto& entries = waits.at(*it);
      const bool free = std::all_of(entries.begin(), entries.end(),
                                    [&](const auto& wait) { return admitted_without(*wait.first, wait.second, gone); });
      if (!free) {
        ++it;
        continue;
      }
      gone.insert(*it);
      it = stuck.erase(it);
      progress = true;
    }
  }
  return stuck;
}

// Among the stuck leases: who waits for whom, with the leases that can go gone.
Graph wait_for_graph(const std::vector<Queue>& queues, const Waits& waits, const Leases& stuck) {
  Leases gone;
  for (const auto& queue : queues) {
    for (const auto& entry : queue.entries) {
      const auto lease = entry.source->lease;
      if (lease != 0 && !stuck.contains(lease)) gone.insert(lease);
    }
  }
  Graph graph;
  for (const auto lease : stuck) {
    auto& edges = graph[lease];
    for (const auto& [queue, index] : waits.at(lease)) {
      std::vector<const Entry*> blockers;
      if (admitted_without(*queue, index, gone, &blockers)) continue;
      for (const Entry* blocker : blockers) {
        if (!stuck.contains(blocker->source->lease)) continue;  // a key without a lease
        auto [edge, fresh] =
            edges.try_emplace(blocker->source->lease, Edge{queue->name, &queue->entries[index], blocker->holds});
        if (!fresh && edge->second.name == queue->name) edge->second.holding |= blocker->holds;
      }
    }
  }
  return graph;
}

Leases reachable(const Graph& graph, std::int64_t from) {
  Leases seen{from};
  std::deque<std::int64_t> next{from};
  while (!next.empty()) {
    const auto lease = next.front();
    next.pop_front();
    const auto edges = graph.find(lease);
    if (edges == graph.end()) continue;
    for (const auto& [to, edge] : edges->second) {
      if (seen.insert(to).second) next.push_back(to);
    }
  }
  return seen;
}

Graph reversed(const Graph& graph) {
  Graph back;
  for (const auto& [from, edges] : graph) {
    for (const auto& [to, edge] : edges) back[to][from] = edge;
  }
  return back;
}

// The shortest cycle through `start` within `group`, found breadth first with
// leases in order, so that the same graph gives the same cycle.
std::vector<std::int64_t> shortest_cycle(const Graph& graph, const Leases& group, std::int64_t start) {
  std::map<std::int64_t, std::int64_t> parent;
  std::deque<std::int64_t> next{start};
  while (!next.empty()) {
    const auto lease = next.front();
    next.pop_front();
    for (const auto& [to, edge] : graph.at(lease)) {
      if (!group.contains(to)) continue;
      if (to == start) {
        std::vector<std::int64_t> cycle{lease};
        while (cycle.back() != start) cycle.push_back(parent.at(cycle.back()));
        std::reverse(cycle.begin(), cycle.end());
        return cycle;
      }
      if (parent.try_emplace(to, lease).second) next.push_back(to);
    }
  }
  return {};
}

std::string owner_of(const Entry& entry) {
  const auto value = decode_holder_value(entry.source->value);
  return value ? value->owner : "unknown";
}

Deadlock describe(const Graph& graph, const std::vector<std::int64_t>& cycle) {
  Deadlock deadlock;
  for (std::size_t i = 0; i < cycle.size(); ++i) {
    const auto previous = cycle[(i + cycle.size() - 1) % cycle.size()];
    const auto& waiting = graph.at(cycle[i]).at(cycle[(i + 1) % cycle.size()]);
    const auto& waited_for = graph.at(previous).at(cycle[i]);
    deadlock.members.push_back({cycle[i], owner_of(*waiting.waiter), std::string(waited_for.name), waited_for.holding,
                                std::string(waiting.name)});
  }
  return deadlock;
}

}  // namespace

std::vector<Deadlock> find_deadlocks(std::string_view prefix, std::span<const PrefixEntry> entries) {
  const auto queues = queues_of(prefix, entries);
  Waits waits;
  for (const auto& queue : queues) {
    for (std::size_t i = 0; i < queue.entries.size(); ++i) {
      const auto lease = queue.entries[i].source->lease;
      if (lease != 0 && queue.entries[i].own && !queue.entries[i].holds) waits[lease].emplace_back(&queue, i);
    }
  }
  const auto stuck = stuck_leases(queues, waits);
  const auto graph = wait_for_graph(queues, waits, stuck);
  const auto back = reversed(graph);
  std::vector<Deadlock> deadlocks;
  Leases placed;
  for (const auto lease : stuck) {
    if (placed.contains(lease)) continue;
    const auto ahead = reachable(graph, lease);
    Leases group;
    for (const auto member : reachable(back, lease)) {
      if (ahead.contains(member)) group.insert(member);
    }
    placed.insert(group.begin(), group.end());
    if (group.size() < 2) continue;
    const auto cycle = shortest_cycle(graph, group, lease);
    if (!cycle.empty()) deadlocks.push_back(describe(graph, cycle));  // never empty in a group of two or more
  }
  return deadlocks;
}

}  // namespace etcdlock::detail
