// Context switches of this process's threads, by thread name, from
// /proc/self/task: which threads wake how often per operation (etcdlock's are
// named "etcdlock-<role>", gRPC's by gRPC, the benchmark's own "lockbench").
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

namespace etcdlock::bench {

struct ThreadSwitches {
  std::string name;
  long switches = 0;  // voluntary and involuntary
};

// By thread id, for the threads alive now.
inline std::map<pid_t, ThreadSwitches> thread_switches() {
  std::map<pid_t, ThreadSwitches> threads;
  std::error_code ignored;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ignored)) {
    ThreadSwitches thread;
    std::ifstream(task.path() / "comm") >> thread.name;
    std::ifstream status(task.path() / "status");
    for (std::string line; std::getline(status, line);) {
      if (line.find("ctxt_switches:") != std::string::npos)
        thread.switches += std::stol(line.substr(line.find(':') + 1));
    }
    threads[static_cast<pid_t>(std::stol(task.path().filename().string()))] = thread;
  }
  return threads;
}

// The switches since `before`, per operation, summed by thread name. Threads
// that ended meanwhile are not counted.
inline nlohmann::json switches_by_thread_per_op(const std::map<pid_t, ThreadSwitches>& before, long ops) {
  std::map<std::string, long> by_name;
  for (const auto& [id, now] : thread_switches()) {
    const auto then = before.find(id);
    by_name[now.name] += now.switches - (then != before.end() ? then->second.switches : 0);
  }
  nlohmann::json result = nlohmann::json::object();
  for (const auto& [name, switches] : by_name) {
    if (ops > 0 && switches > 0) result[name] = std::round(static_cast<double>(switches) / ops * 1000) / 1000;
  }
  return result;
}

}  // namespace etcdlock::bench
