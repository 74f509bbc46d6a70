#include "process_tree.h"

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

namespace etcdlock::cli {
namespace {

struct Process {
  pid_t pid = 0;
  pid_t parent = 0;
  pid_t group = 0;
  char state = 0;  // as /proc/PID/stat gives it: 'T' and 't' are stopped
};

// Every process of the system, as far as /proc shows it now.
std::vector<Process> read_processes() {
  std::vector<Process> processes;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return processes;
  while (const dirent* entry = readdir(proc)) {
    char* end = nullptr;
    const long pid = std::strtol(entry->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    std::ifstream stat_file(std::string("/proc/") + entry->d_name + "/stat");
    std::string stat;
    std::getline(stat_file, stat);
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    const auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    char state = 0;
    long ppid = 0;
    long pgrp = 0;
    if (std::sscanf(stat.c_str() + close + 1, " %c %ld %ld", &state, &ppid, &pgrp) == 3) {
      processes.push_back({static_cast<pid_t>(pid), static_cast<pid_t>(ppid), static_cast<pid_t>(pgrp), state});
    }
  }
  closedir(proc);
  return processes;
}

// Stopped ('T', 't' when traced), or a zombie ('Z', 'X'), which runs nothing.
bool is_stopped_or_dead(const Process& process) {
  return process.state == 'T' || process.state == 't' || process.state == 'Z' || process.state == 'X';
}

bool contains(const std::vector<pid_t>& pids, pid_t pid) {
  return std::find(pids.begin(), pids.end(), pid) != pids.end();
}

// The processes of `processes` below `root` (its children, theirs, ...).
// Parents come before their children in /proc only by chance: the set widens
// until it stops growing.
std::vector<Process> below(const std::vector<Process>& processes, pid_t root) {
  std::vector<pid_t> pids{root};
  std::vector<Process> found;
  for (bool grew = true; grew;) {
    grew = false;
    for (const auto& process : processes) {
      if (!contains(pids, process.parent) || contains(pids, process.pid)) continue;
      pids.push_back(process.pid);
      found.push_back(process);
      grew = true;
    }
  }
  return found;
}

}  // namespace

void kill_everything(pid_t group) {
  kill(-group, SIGKILL);
  // The whole tree at once, not the children alone: orphans come to a child
  // subreaper one generation per death, and a daemon chain 60 deep took that
  // many rounds (under AddressSanitizer on a loaded machine, longer than the
  // loss margin). What forks meanwhile is found by the caller's next round.
  for (const auto& process : below(read_processes(), getpid())) kill(process.pid, SIGKILL);
}

std::vector<pid_t> stop_descendants(pid_t root) {
  std::vector<pid_t> stopped;
  // A process forks until its SIGSTOP takes effect: done only once a look
  // finds every process below the root stopped (or dead). The bound guards
  // against one that never stops (in an uninterruptible sleep, say).
  for (int look = 0; look < 200; ++look) {
    bool running = false;
    for (const auto& process : below(read_processes(), root)) {
      if (is_stopped_or_dead(process)) continue;
      running = true;
      if (!contains(stopped, process.pid) && kill(process.pid, SIGSTOP) == 0) stopped.push_back(process.pid);
    }
    if (!running) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return stopped;
}

std::size_t processes_in_group(pid_t group) {
  const auto processes = read_processes();
  return static_cast<std::size_t>(std::count_if(processes.begin(), processes.end(),
                                                [&](const Process& process) { return process.group == group; }));
}

void continue_processes(const std::vector<pid_t>& stopped) {
  for (const pid_t pid : stopped) kill(pid, SIGCONT);
}

}  // namespace etcdlock::cli
