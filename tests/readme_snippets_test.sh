#!/usr/bin/env bash
# Compiles every C++ block of README.md and README.zh-CN.md against the public
# headers, so that the tour cannot name a function the library does not have.
# The blocks are fragments: each becomes the body of a function whose
# parameters are the names the tour takes as given (a manager, a lock, a worker
# thread, the user's step() and stop_scheduling()); its #include lines go to
# the top of the file. Syntax and types only (-fsyntax-only): cheap.
#   readme_snippets_test.sh SOURCE_DIR CXX
set -euo pipefail
source_dir=$1
cxx=${2:-c++}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failed=0
for readme in README.md README.zh-CN.md; do
  # One file per ```cpp block: block-N.body and block-N.includes, N from 1.
  awk -v dir="$work" -v name="$readme" '
    /^```cpp[[:space:]]*$/ { inside = 1; ++n; file = dir "/" name "-" n; printf "" > (file ".body"); printf "" > (file ".includes"); next }
    /^```/ && inside { inside = 0; next }
    inside && /^#include/ { print > (file ".includes"); next }
    inside { print > (file ".body") }
  ' "$source_dir/$readme"
  count=0
  for body in "$work/$readme"-*.body; do
    [[ -e $body ]] || continue
    count=$((count + 1))
    block=${body%.body}
    {
      echo '#include <etcdlock/etcdlock.h>'
      echo '#include <iostream>'
      echo '#include <mutex>'
      echo '#include <shared_mutex>'
      echo '#include <stop_token>'
      echo '#include <string>'
      echo '#include <thread>'
      cat "$block.includes"
      echo 'using namespace std::chrono_literals;'
      echo 'std::string step();'
      echo 'void stop_scheduling();'
      echo 'void snippet(etcdlock::LockManager& manager, std::shared_ptr<etcdlock::Lock> lock, std::jthread& worker) {'
      echo '  {'
      echo "#line 1 \"$readme, C++ block $(basename "$block" | sed 's/.*-//')\""
      cat "$body"
      echo '  }'
      echo '}'
    } >"$block.cc"
    if ! "$cxx" -std=c++20 -fsyntax-only -I "$source_dir/include" "$block.cc"; then
      echo "readme_snippets: a C++ block of $readme does not compile (above)" >&2
      failed=1
    fi
  done
  if ((count == 0)); then
    echo "readme_snippets: no C++ block found in $readme" >&2
    failed=1
  fi
  echo "$readme: $count C++ blocks checked"
done
exit $failed
