#include "etcdlock/lock_info.h"

#include "base/text.h"

namespace etcdlock {

std::string lease_hex(std::int64_t lease_id) { return detail::hex_id(lease_id); }

}  // namespace etcdlock
