#include "etcdlock/session_state.h"

namespace etcdlock {

std::string_view to_string(SessionState state) noexcept {
  switch (state) {
    case SessionState::healthy:
      return "healthy";
    case SessionState::suspect:
      return "suspect";
    case SessionState::lost:
      return "lost";
    case SessionState::closed:
      return "closed";
  }
  return "unknown";
}

}  // namespace etcdlock
