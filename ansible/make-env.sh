#!/bin/sh
# Makes .env from .env.example, or adds to an existing .env the variables it lacks (those a newer .env.example
# brought). Each empty *_PASSWORD and *_COOKIE gets a random value (32 hex digits); the values .env has stay, and
# nothing is written when it lacks nothing. `make .env` runs it, and so does the Vagrant stage for its copy of the
# checkout.
#
#   ansible/make-env.sh [NAME=VALUE…]   NAME=VALUE: NAME's value in what is written, instead of the example's
#
# Settings (environment): ENV_FILE, the file to make (.env at the repository root).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
example=$root/.env.example
env_file=${ENV_FILE:-$root/.env}
# shellcheck source=ansible/dotenv.sh
. "$root/ansible/dotenv.sh"

for arg in ${1+"$@"}; do
  case ${arg%%=*} in
    "$arg" | '' | [!A-Za-z_]* | *[!A-Za-z0-9_]*) echo "usage: $0 [NAME=VALUE…]" >&2; exit 2 ;;
  esac
done
# .env's variables, one NAME=VALUE a line, each line after a newline: "$nl$NAME=" finds NAME
nl='
'
have=
[ -f "$env_file" ] && have=$nl$(dotenv_pairs "$env_file")

secret() { openssl rand -hex 16 2>/dev/null || od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

# The example's lines: all of them for a new file; for an existing one, only the variables it lacks.
lines=
added=
while IFS= read -r line || [ -n "$line" ]; do
  name=${line%%=*}
  case $name in "$line" | '' | [!A-Za-z_]* | *[!A-Za-z0-9_]*) name= ;; esac
  if [ -f "$env_file" ]; then
    [ -n "$name" ] || continue
    case $have in *"$nl$name="*) continue ;; esac
    added="$added $name"
  fi
  wanted=
  for arg in ${1+"$@"}; do
    case $arg in "$name="*) wanted=$arg ;; esac
  done
  if [ -n "$wanted" ]; then
    line=$wanted
  else
    case $line in *_PASSWORD= | *_COOKIE=) [ -z "$name" ] || line=$line$(secret) ;; esac
  fi
  lines=$lines$line$nl
done < "$example"

umask 077
if [ ! -f "$env_file" ]; then
  printf '%s' "$lines" > "$env_file.tmp"
  mv "$env_file.tmp" "$env_file"
  echo "Made $env_file from .env.example (each empty *_PASSWORD and *_COOKIE got a random value)."
elif [ -n "$added" ]; then
  printf '\n# Added from .env.example by ansible/make-env.sh\n%s' "$lines" >> "$env_file"
  echo "Added to $env_file from .env.example:$added (each empty *_PASSWORD and *_COOKIE got a random value)."
fi
