#include "base/thread_name.h"

#include <pthread.h>

#include <algorithm>
#include <string>

namespace etcdlock::detail {

void name_this_thread(std::string_view role) noexcept {
  try {
    std::string name = "etcdlock-";
    name.append(role);
    name.resize(std::min<std::size_t>(name.size(), 15));  // the kernel's limit, without the NUL
    pthread_setname_np(pthread_self(), name.c_str());
  } catch (...) {
    // An allocation failed: the thread keeps its inherited name.
  }
}

}  // namespace etcdlock::detail
