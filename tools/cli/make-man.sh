#!/bin/sh
# Writes the etcdlock(1) man page from the command's own help: `etcdlock
# --help`, then each subcommand's --help, so the page says what the command
# says.   make-man.sh ETCDLOCK_BINARY OUTPUT
set -eu
program=$1
output=$2
# roff: a backslash doubled; a line that starts with . or ' escaped.
escape() { sed -e 's/\\/\\\\/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"; }
version=$("$program" --version | awk '{ print $2 }')
subcommands=$("$program" --help | awk '/^Subcommands:/ { listed = 1; next } listed && /^  [a-z]/ { print $1 }')
{
  echo ".TH ETCDLOCK 1 \"\" \"etcdlock $version\" \"User Commands\""
  echo ".SH NAME"
  echo "etcdlock \\- distributed locks and elections on etcd v3, compatible with etcdctl lock and elect"
  echo ".SH SYNOPSIS"
  echo ".B etcdlock"
  echo "[OPTIONS] SUBCOMMAND [ARGS...]"
  echo ".SH DESCRIPTION"
  echo ".nf"
  "$program" --help | escape
  echo ".fi"
  echo ".SH SUBCOMMANDS"
  for subcommand in $subcommands; do
    echo ".SS $subcommand"
    echo ".nf"
    "$program" "$subcommand" --help | escape
    echo ".fi"
  done
} >"$output"
