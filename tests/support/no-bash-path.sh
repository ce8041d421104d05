#!/usr/bin/env bash
# Makes DIR a PATH of its own, as a host without bash has: a link to every program on this PATH but bash (rbash too).
# The host-side steps run with it, under the Makefile's /bin/sh, as on a stock Mac (whose bash is 3.2).
#
#   tests/support/no-bash-path.sh DIR
set -euo pipefail
[ "$#" -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
mkdir -p "$1"
IFS=: read -ra dirs <<<"$PATH"
for dir in "${dirs[@]}"; do
  for program in "$dir"/*; do
    name=${program##*/}
    # the first of the PATH wins, as in a lookup
    [ -x "$program" ] && [ ! -e "$1/$name" ] && [ ! -L "$1/$name" ] || continue
    case $name in bash | rbash) ;; *) ln -s "$program" "$1/$name" ;; esac
  done
done
