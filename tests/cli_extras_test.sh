#!/usr/bin/env bash
# The man page and the bash completion say what the command says: the page has
# a section for each subcommand of `etcdlock --help`, and completion offers
# the subcommands, then the flags of the one typed.
#   cli_extras_test.sh SOURCE_DIR ETCDLOCK_BINARY MAN_PAGE
set -euo pipefail
source_dir=$1
program=$2
page=$3
fail() { echo "cli_extras: $*" >&2; exit 1; }

subcommands=$("$program" --help | awk '/^Subcommands:/ { listed = 1; next } listed && /^  [a-z]/ { print $1 }')
[[ -n $subcommands ]] || fail "no subcommands in etcdlock --help"
grep -q '^\.TH ETCDLOCK 1' "$page" || fail "$page has no .TH header"
for subcommand in $subcommands; do
  grep -qx ".SS $subcommand" "$page" || fail "$page has no section for $subcommand"
done
grep -q -- '--kill-after' "$page" || fail "$page lacks run's flags"

source "$source_dir/tools/cli/completion/etcdlock.bash"
complete_words() {
  COMP_WORDS=("$program" "$@")
  COMP_CWORD=$#
  COMPREPLY=()
  _etcdlock
  echo "${COMPREPLY[*]}"
}
[[ $(complete_words ru) == run ]] || fail "ru does not complete to run: $(complete_words ru)"
[[ " $(complete_words run --ki) " == *" --kill-after "* ]] || fail "run --ki: $(complete_words run --ki)"
[[ " $(complete_words --end) " == *" --endpoints "* ]] || fail "--end: $(complete_words --end)"
[[ " $(complete_words unlock --f) " == *" --force "* ]] || fail "unlock --f: $(complete_words unlock --f)"
echo "man page and bash completion agree with etcdlock --help"
