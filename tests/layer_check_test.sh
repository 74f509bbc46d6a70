#!/usr/bin/env bash
# scripts/check-layers passes on this tree, and fails, naming the file and
# line, on a copy where a low layer includes a high one.
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/.." && pwd)
"$source_dir/scripts/check-layers" "$source_dir"

copy=$(mktemp -d)
trap 'rm -rf "$copy"' EXIT
cp -r "$source_dir/src" "$source_dir/include" "$copy/"
printf '#include "manager/manager_impl.h"\n' >>"$copy/src/base/text.cc"
line=$(wc -l <"$copy/src/base/text.cc")
if output=$("$source_dir/scripts/check-layers" "$copy" 2>&1); then
  echo "an upward include passed the check" >&2
  exit 1
fi
grep -q "src/base/text.cc:$line: layer base includes \"manager/manager_impl.h\"" <<<"$output" || {
  echo "the check did not name the offending line: $output" >&2
  exit 1
}
