# bash completion for etcdlock. The subcommands and flags come from the
# command's own --help, so they cannot drift from it. Installed to
# share/bash-completion/completions/etcdlock.
_etcdlock() {
  local program=${COMP_WORDS[0]} cur=${COMP_WORDS[COMP_CWORD]} sub="" word subs flags
  subs=$("$program" --help 2>/dev/null | awk '/^Subcommands:/ { listed = 1; next } listed && /^  [a-z]/ { print $1 }')
  for word in "${COMP_WORDS[@]:1:COMP_CWORD-1}"; do
    [[ $word == -- ]] && { COMPREPLY=($(compgen -c -- "$cur")); return; }  # the command to run
    if grep -qx -- "$word" <<<"$subs"; then
      sub=$word
      break
    fi
  done
  if [[ $cur == -* ]]; then
    flags=$({ "$program" --help; [[ -z $sub ]] || "$program" "$sub" --help; } 2>/dev/null |
      grep -oE -- '(^|[ ,])--?[a-z][a-z-]*' | tr -d ' ,' | sort -u)
    COMPREPLY=($(compgen -W "$flags" -- "$cur"))
  elif [[ -z $sub ]]; then
    COMPREPLY=($(compgen -W "$subs" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}
complete -F _etcdlock etcdlock
