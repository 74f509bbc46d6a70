#include "etcdlock/lock_event.h"

namespace etcdlock {

std::string_view to_string(LockEvent::Kind kind) noexcept {
  switch (kind) {
    case LockEvent::Kind::queued:
      return "queued";
    case LockEvent::Kind::acquired:
      return "acquired";
    case LockEvent::Kind::released:
      return "released";
    case LockEvent::Kind::left:
      return "left";
  }
  return "unknown";
}

}  // namespace etcdlock
