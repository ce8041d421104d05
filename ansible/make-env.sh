#!/usr/bin/env bash
# Makes .env from .env.example, or adds to an existing .env the variables it lacks (those a newer .env.example
# brought). Each empty *_PASSWORD and *_COOKIE gets a random value (32 hex digits); the values .env has stay, and
# nothing is written when it lacks nothing. `make .env` runs it, and so does the Vagrant stage for its copy of the
# checkout.
#
#   ansible/make-env.sh [NAME=VALUE…]   NAME=VALUE: NAME's value in what is written, instead of the example's
#
# Settings (environment): ENV_FILE, the file to make (.env at the repository root).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
example=$root/.env.example
env_file=${ENV_FILE:-$root/.env}
# shellcheck source=ansible/dotenv.sh
. "$root/ansible/dotenv.sh"

declare -A wanted=()
for arg in "$@"; do
  [[ $arg =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || { echo "usage: $0 [NAME=VALUE…]" >&2; exit 2; }
  wanted[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
done
declare -A have=()
[ -f "$env_file" ] && dotenv_read "$env_file" have

secret() { openssl rand -hex 16 2>/dev/null || od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

# The example's lines: all of them for a new file; for an existing one, only the variables it lacks.
lines=()
added=()
while IFS= read -r line || [ -n "$line" ]; do
  name=""
  [[ $line =~ ^([A-Za-z_][A-Za-z0-9_]*)= ]] && name=${BASH_REMATCH[1]}
  if [ -f "$env_file" ]; then
    [ -n "$name" ] && [ -z "${have[$name]+set}" ] || continue
    added+=("$name")
  fi
  if [ -n "$name" ] && [ -n "${wanted[$name]+set}" ]; then
    line="$name=${wanted[$name]}"
  elif [[ $line =~ ^[A-Za-z_][A-Za-z0-9_]*_(PASSWORD|COOKIE)=$ ]]; then
    line+=$(secret)
  fi
  lines+=("$line")
done < "$example"

umask 077
if [ ! -f "$env_file" ]; then
  printf '%s\n' "${lines[@]}" > "$env_file.tmp"
  mv "$env_file.tmp" "$env_file"
  echo "Made $env_file from .env.example (each empty *_PASSWORD and *_COOKIE got a random value)."
elif [ "${#added[@]}" -gt 0 ]; then
  { printf '\n# Added from .env.example by ansible/make-env.sh\n'; printf '%s\n' "${lines[@]}"; } >> "$env_file"
  echo "Added to $env_file from .env.example: ${added[*]} (each empty *_PASSWORD and *_COOKIE got a random value)."
fi
