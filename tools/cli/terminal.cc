#include "terminal.h"

#include <fcntl.h>
#include <unistd.h>

#include "process_tree.h"

namespace etcdlock::cli {

bool pass_terminal(pid_t from, pid_t to) {
  const int terminal = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (terminal < 0) return false;  // no controlling terminal
  const bool passed = tcgetpgrp(terminal) == from && tcsetpgrp(terminal, to) == 0;
  close(terminal);
  return passed;
}

bool is_a_job_of_its_own(pid_t process) { return getpgid(process) == process && processes_in_group(process) == 1; }

}  // namespace etcdlock::cli
