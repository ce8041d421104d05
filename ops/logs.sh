#!/bin/sh
# `make logs`: follows the apps' logs (PM2's, pino's JSON lines) as lines a person reads, through pino-pretty on each
# host: every VM's at once, each line after its VM's name, when `make up` made them (.vagrant/ssh_config); else this
# host's after `make local`. Ctrl-C stops them all.
#   LOG_LINES  how many earlier lines of each log to show first (20)
#   APP        one app's logs only: api-gateway, inventory-api or billing-consumer (every app's)
set -u
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=ops/deployment.sh
. ops/deployment.sh
lines=${LOG_LINES:-20}
app=${APP:-}
case $lines in '' | *[!0-9]*) echo "LOG_LINES must be a number" >&2; exit 2 ;; esac
case $app in
  *[!a-z-]*) echo "APP must be an app's name (api-gateway, inventory-api, billing-consumer)" >&2; exit 2 ;;
esac
# run as root on each host; pino-pretty from the release (the crud_build role's), one line an entry
pretty="$release/node_modules/.bin/pino-pretty --colorize --singleLine --ignore pid,hostname"
follow="pm2 logs $app --raw --lines $lines | $pretty"
vms=$(deployed_vms)

if [ -n "$vms" ]; then
  # the background readers ignore SIGINT in a non-interactive shell: stop them with this one
  trap 'trap - INT TERM; kill 0' INT TERM
  for vm in $vms; do
    # a terminal on the VM (-tt): when this ssh goes, the followers there get SIGHUP
    on_vm -tt -o LogLevel=ERROR "$vm" "sudo -n sh -c '$follow'" 2>&1 | tr -d '\r' | sed "s/^/$vm | /" &
  done
  wait
elif [ -d "$release/node_modules" ]; then
  as_root sh -c "$follow"
else
  echo "Nothing deployed: make up (the VMs) or make local (this host) first." >&2
  exit 1
fi
