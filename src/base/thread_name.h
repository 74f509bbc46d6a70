// Names etcdlock's threads, so that `top -H`, a debugger and the benchmark's
// count of context switches by thread tell them apart from the application's
// and gRPC's.
#pragma once

#include <string_view>

namespace etcdlock::detail {

// Names the calling thread "etcdlock-<role>" (cut to the 15 characters Linux
// keeps). Best effort: a failure changes nothing else.
void name_this_thread(std::string_view role) noexcept;

}  // namespace etcdlock::detail
