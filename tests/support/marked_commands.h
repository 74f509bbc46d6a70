// MarkedCommands: shell commands that leave timed marks in a shared file, so
// that whether two commands ran at once is measured, not guessed. A command
// appends "<label> <ns since the epoch>" every 20 ms while it runs; a label's
// span is its first to its last mark, and two spans must not overlap.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "child_process.h"
#include "wire_helpers.h"

namespace etcdlock::testing {

// The argv of the etcdlock command built beside the tests.
inline std::vector<std::string> etcdlock_argv(const std::string& endpoints, const std::string& prefix,
                                              const std::vector<std::string>& args) {
  std::vector<std::string> argv = {built_program("../tools/cli/etcdlock"), "--endpoints=" + endpoints,
                                   "--prefix=" + prefix};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

class MarkedCommands {
 public:
  struct Span {
    std::int64_t first = 0, last = 0;  // ns since the epoch
    int marks = 0;
  };

  // Labels with a meaning of their own, not spans: "P" records a command's
  // process group (killed at the end), "R" a line a command read.
  MarkedCommands() = default;
  // On code that lets a command outlive etcdlock, it would run on after the
  // test: kill what the commands said they were, then remove the files.
  ~MarkedCommands() {
    for (const auto& [label, value] : read_marks()) {
      if (label != "P" || value <= 0) continue;
      kill(-static_cast<pid_t>(value), SIGKILL);
      kill(static_cast<pid_t>(value), SIGKILL);
    }
    std::filesystem::remove_all(directory_);
  }
  MarkedCommands(const MarkedCommands&) = delete;
  MarkedCommands& operator=(const MarkedCommands&) = delete;

  // Shell text that appends "<label> <ns>" to the marks.
  std::string mark(const std::string& label) const {
    return "echo \"" + label + " $(date +%s%N)\" >> '" + marks_ + "'";
  }
  // Records the shell's PID, its command's group (for the cleanup above).
  std::string record_group() const { return "echo \"P $$\" >> '" + marks_ + "'"; }
  // Marks `label` every 20 ms, for ever or `times` times.
  std::string marking(const std::string& label, int times = 0) const {
    if (times == 0) return "while :; do " + mark(label) + "; sleep 0.02; done";
    return "i=0; while [ $i -lt " + std::to_string(times) + " ]; do " + mark(label) + "; sleep 0.02; i=$((i+1)); done";
  }
  // A script file, run with sh.
  std::string script(const std::string& name, const std::string& text) const {
    const auto path = directory_ / name;
    std::ofstream(path) << text << "\n";
    return path.string();
  }

  // The marks, line by line. A mark whose `date` was killed with its group
  // has no number ("A "): it is skipped, not taken for the next line's.
  std::vector<std::pair<std::string, std::int64_t>> read_marks() const {
    std::vector<std::pair<std::string, std::int64_t>> result;
    std::ifstream marks(marks_);
    for (std::string line; std::getline(marks, line);) {
      std::istringstream fields(line);
      std::string label;
      std::int64_t value = 0;
      if (fields >> label >> value) result.emplace_back(label, value);
    }
    return result;
  }
  std::map<std::string, Span> spans() const {
    std::map<std::string, Span> result;
    for (const auto& [label, at] : read_marks()) {
      if (label == "P" || label == "R") continue;
      auto& span = result[label];
      span.first = span.marks == 0 ? at : std::min(span.first, at);
      span.last = std::max(span.last, at);
      ++span.marks;
    }
    return result;
  }
  bool marked(const std::string& label, std::chrono::milliseconds timeout = std::chrono::seconds(15)) const {
    return eventually([&] { return spans().contains(label); }, timeout);
  }
  // How long spans `a` and `b` ran at once, in ms; zero or less when not.
  double overlap_ms(const std::string& a, const std::string& b) const {
    const auto all = spans();
    const Span& x = all.at(a);
    const Span& y = all.at(b);
    return static_cast<double>(std::min(x.last, y.last) - std::max(x.first, y.first)) / 1e6;
  }
  // Expects `label`'s span to end before `next`'s begins.
  void expect_before(const std::string& label, const std::string& next) const {
    const auto all = spans();
    ASSERT_TRUE(all.contains(label)) << label << " never ran";
    ASSERT_TRUE(all.contains(next)) << next << " never ran";
    const double overlap = overlap_ms(label, next);
    std::cout << label << " and " << next << ": " << (overlap > 0 ? "overlapped " : "apart ") << std::abs(overlap)
              << " ms\n";
    EXPECT_LT(overlap, 0) << label << " ran beside " << next << " for " << overlap << " ms";
  }

 protected:
  std::filesystem::path directory_ = [] {
    std::string pattern = (std::filesystem::temp_directory_path() / "etcdlock-marks-XXXXXX").string();
    return std::filesystem::path(mkdtemp(pattern.data()));
  }();
  std::string marks_ = (directory_ / "marks").string();
};

}  // namespace etcdlock::testing
