#!/usr/bin/env bash
# Runs a command (the provisioning: ansible/local.sh) while it samples every process's command line (/proc/*/cmdline)
# every few milliseconds, and fails if any *_PASSWORD or *_COOKIE value of .env appears in one: any user on the host
# can read every command line (ps), so a secret passed as an argument is a secret handed out.
#
#   tests/provision/secrets-on-cmdline.sh COMMAND…
#
# Exits with COMMAND's status when it failed, 1 when a secret was seen, else 0. A finding names the variable and the
# program (never the secret). Bash builtins only in the sampling loop: the provisioning runs before Node.js exists.
set -uo pipefail
cd "$(dirname "$0")/../.."
[ "$#" -gt 0 ] || { echo "usage: $0 COMMAND…" >&2; exit 2; }

# shellcheck source=ansible/dotenv.sh
. ansible/dotenv.sh
# The secrets of .env (made by `make .env` when missing: the command may make it, so read it once it exists).
declare -A secrets=()
load_secrets() {
  local pair name value
  [ -f .env ] || return 0
  while IFS= read -r pair; do
    name=${pair%%=*} value=${pair#*=}
    # Short values would match by chance; `make .env` makes 32 hex digits.
    [[ $name =~ _(PASSWORD|COOKIE)$ ]] && [ "${#value}" -ge 8 ] && secrets[$name]=$value
  done < <(dotenv_pairs .env)
}

findings=$(mktemp)
stop=$(mktemp)
trap 'rm -f "$findings" "$stop"' EXIT

# One sweep over /proc; `mapfile -d ''` splits a command line at its NUL bytes without forking.
sample() {
  local sweeps=0 seen=0 cmdline pid name args line
  while [ -e "$stop" ]; do
    [ "${#secrets[@]}" -gt 0 ] || load_secrets
    for cmdline in /proc/[0-9]*/cmdline; do
      mapfile -d '' args 2>/dev/null < "$cmdline" || continue
      [ "${#args[@]}" -gt 0 ] || continue
      seen=$((seen + 1))
      for name in "${!secrets[@]}"; do
        line=${args[*]}
        if [[ $line == *"${secrets[$name]}"* ]]; then
          pid=${cmdline#/proc/}; pid=${pid%/cmdline}
          # The secret is masked here: printing it (or passing it to sed) would leak it once more.
          printf '%s on the command line of pid %s: %s\n' "$name" "$pid" "${line//"${secrets[$name]}"/<$name>}" \
            | cut -c1-300 >> "$findings"
        fi
      done
    done
    sweeps=$((sweeps + 1))
  done
  echo "secrets-on-cmdline: $sweeps sweeps, $seen command lines read" >> "$findings"
}

load_secrets
sample &
sampler=$!
started=$(date +%s%N)
"$@"
status=$?
rm -f "$stop"
wait "$sampler"
elapsed_ms=$(( ($(date +%s%N) - started) / 1000000 ))

summary=$(tail -1 "$findings")
hits=$(sed '$d' "$findings" | sort -u)
echo "$summary in ${elapsed_ms} ms (${#secrets[@]} secrets of .env)"
if [ "$status" -ne 0 ]; then
  echo "secrets-on-cmdline: $* exited with $status" >&2
  exit "$status"
fi
if [ "${#secrets[@]}" -eq 0 ]; then
  echo "secrets-on-cmdline: FAIL: .env has no *_PASSWORD to look for" >&2
  exit 1
fi
if [ -n "$hits" ]; then
  echo "secrets-on-cmdline: FAIL: a secret of .env was on a process's command line:" >&2
  sed 's/^/  /' <<<"$hits" >&2
  exit 1
fi
echo "secrets-on-cmdline: OK: no *_PASSWORD value of .env on any command line"
