# Sourced, never run: the reader of .env for the shell scripts (make-env.sh, the stage) and the tests, in POSIX sh
# (dash, and macOS's bash 3.2, run it), by the grammar in .env.example's header, as group_vars/all/env.yml and the
# Vagrantfile read it (tests/component/dotenv-readers.test.ts). Its variables are prefixed dotenv_: POSIX sh has no
# local ones.
#
#   dotenv_pairs FILE         prints FILE's variables as NAME=VALUE lines, each name once
#   dotenv_export FILE        exports FILE's variables to this shell

dotenv_pairs() {
  awk -v q="'" '
    { sub(/^[ \t\r]+/, ""); sub(/[ \t\r]+$/, ""); sub(/^export[ \t]+/, "") }
    !/^[A-Za-z_][A-Za-z0-9_]*=/ { next }
    {
      eq = index($0, "="); name = substr($0, 1, eq - 1); value = substr($0, eq + 1)
      sub(/^[ \t]+/, "", value)
      first = substr(value, 1, 1)
      if (length(value) >= 2 && (first == "\"" || first == q) && substr(value, length(value)) == first)
        value = substr(value, 2, length(value) - 2)
      if (!(name in values)) names[++count] = name
      values[name] = value
    }
    END { for (i = 1; i <= count; i++) print names[i] "=" values[names[i]] }
  ' "$1"
}

dotenv_export() {
  dotenv_vars=$(dotenv_pairs "$1") || return
  while IFS= read -r dotenv_pair; do
    [ -z "$dotenv_pair" ] || export "${dotenv_pair?}"
  done <<EOF
$dotenv_vars
EOF
  unset dotenv_vars dotenv_pair
}
