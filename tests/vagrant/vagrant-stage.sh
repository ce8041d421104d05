#!/usr/bin/env bash
# `make vagrant-test`, the last stage of `make test`: the VM path for real. The checkout's own Vagrantfile, with
# Vagrant's docker provider, brings up gateway-vm, inventory-vm and billing-vm (`make up PROVIDER=docker`: systemd
# guests from `make box`, provisioned by ansible_local), and then, against the guests:
#   - each guest runs systemd and the pinned Node.js, and finds the others at the addresses of .env;
#   - the end-to-end suite (pm2 and psql over SSH on the guests) and the Postman collection through gateway-vm;
#   - the seed's scenario over `vagrant ssh`, and a `vagrant reload` of all three with orders waiting (vm-path.test.ts);
#   - orders at 100/s while billing-vm's broker stops and restarts, then billing-vm halts and comes back
#     (scale.test.ts: exactly once; the 503s are reported, to compare with make scale-test's);
#   - `make provision-idempotent`: ansible-playbook over SSH with inventory.ini reports changed=0 on every host;
#   - isolation: which databases and broker logins each guest gets, and what each guest's firewall lets in (the host
#     scrapes RabbitMQ's metrics; inventory-api stays closed to it);
#   - `make destroy` leaves no container and no network.
# With VAGRANT_STAGE_BILLING_VMS=N >= 2 (`make scale-test`: 3, five machines) the checkout's .env says
# BILLING_VM_COUNT=N, and the stage runs the same checks on every machine, but not the end-to-end suite and the seed's
# scenario (one consumer per queue); tests/vagrant/scale.test.ts checks one RabbitMQ cluster, quorum queues with a
# replica on each billing VM, and orders at 100/s while billing-vm's broker stops and billing-vm-N halts (exactly
# once, <= 1% 503).
# Docker, the guests and every test packet live in a network namespace with NAT out (sandbox.sh); the stage tears it
# all down on every exit path.
#
# The last line: `vagrant-stage: N passed, M failed`; the exit code is non-zero when anything failed.
# Settings (environment):
#   VAGRANT_STAGE_SOURCE  the checkout to deploy and test (this repository); e.g. a copy with a deliberate bug
#   VAGRANT_STAGE_BILLING_VMS  how many billing VMs (BILLING_VM_COUNT of the checkout's .env): 1, the three-VM layout
#   VAGRANT_STAGE_LOGS    where the logs go (.test-results/vagrant; .test-results/vagrant-scale with several billing VMs)
#   VAGRANT_STAGE_KEEP=1  leave the machines and the sandbox up at the end, to look around:
#                         `tests/vagrant/sandbox.sh exec sh -c 'cd DIR && vagrant ssh billing-vm'`
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
source_dir=$(cd "${VAGRANT_STAGE_SOURCE:-$repo}" && pwd)
billing_vm_count=${VAGRANT_STAGE_BILLING_VMS:-1}
if [ "$billing_vm_count" -gt 1 ] 2>/dev/null; then scale=1; else scale=0; billing_vm_count=1; fi
logs=${VAGRANT_STAGE_LOGS:-$repo/.test-results/vagrant$([ "$scale" = 1 ] && echo -scale)}
keep=${VAGRANT_STAGE_KEEP:-0}
sandbox=$here/sandbox.sh
# The machines of the Vagrantfile: billing-vm-2 … billing-vm-N after billing-vm.
billing_vms=(billing-vm)
for ((k = 2; k <= billing_vm_count; k++)); do billing_vms+=("billing-vm-$k"); done
machines=(gateway-vm inventory-vm "${billing_vms[@]}")
export VAGRANT_CHECKPOINT_DISABLE=1 ANSIBLE_NOCOLOR=1

started=$(date +%s)
passed=0
failed=0
failures=()
pass() { passed=$((passed + 1)); echo "  ok    $1"; }
fail() {
  failed=$((failed + 1)); failures+=("$1 -- $(printf '%s' "$2" | tr -s '\n' ' ')")
  echo "  FAIL  $1"
  printf '%s\n' "$2" | sed 's/^/        /'
}
step() { echo; echo "==> $* ($(( $(date +%s) - started ))s)"; }
summary() {
  echo
  echo "vagrant-stage: took $(( $(date +%s) - started ))s; logs in $logs"
  if [ "${#failures[@]}" -gt 0 ]; then
    echo "vagrant-stage: what failed:"
    printf '  - %s\n' "${failures[@]}" | cut -c1-600
  fi
  echo "vagrant-stage: $passed passed, $failed failed"
}

tmp=""
checkout=""
tunnels=()
# Stops the SSH tunnels of the end-to-end suite (ours, by pid).
close_tunnels() {
  local pid
  for pid in "${tunnels[@]}"; do kill "$pid" 2>/dev/null; done
  tunnels=()
}
teardown() {
  close_tunnels
  [ -n "$tmp" ] || return 0
  if [ "$keep" = 1 ]; then
    echo "vagrant-stage: VAGRANT_STAGE_KEEP=1: the machines run in $checkout; tear down with:" \
      "$sandbox exec make -C $checkout destroy && $sandbox down && rm -rf $tmp"
    tmp=""
    return 0
  fi
  [ -d "$checkout/.vagrant/machines" ] && in_sandbox make -C "$checkout" --no-print-directory destroy > "$logs/teardown.log" 2>&1
  "$sandbox" down >> "$logs/teardown.log" 2>&1
  rm -rf "$tmp"
  tmp=""
}
trap teardown EXIT
trap 'echo "vagrant-stage: interrupted"; exit 130' INT TERM

# Fails the whole run now (a step that the rest depends on).
abort() { fail "$1" "$2"; teardown; summary; exit 1; }

in_sandbox() { "$sandbox" exec "$@"; }
# COMMAND… as root on a guest (the on-vm script below).
on_vm() { in_sandbox "$tmp/on-vm" "$@"; }
# COMMAND… in a guest's network namespace, with this machine's programs (psql, node, curl).
net_of() {
  local vm=$1 pid; shift
  pid=$(in_sandbox docker inspect -f '{{.State.Pid}}' "crud-master-$vm") || return 1
  nsenter --net="/proc/$pid/ns/net" -- "$@"
}
# A machine's Ansible group, and its address by .env: billing-vm-k at BILLING_VM_IP's last octet + k - 1.
group_of() { case $1 in billing-vm*) echo billing ;; *) echo "${1%-vm}" ;; esac; }
ip_of() {
  case $1 in
    billing-vm-*) echo "${BILLING_VM_IP%.*}.$(( ${BILLING_VM_IP##*.} + ${1#billing-vm-} - 1 ))" ;;
    *) local key; key=$(tr '[:lower:]-' '[:upper:]_' <<<"${1%-vm}")_VM_IP; echo "${!key}" ;;
  esac
}
# The task that failed and Ansible's message, from a provisioning log.
failed_task() { awk '/^TASK \[/ { task = $0 } /^(fatal|failed):/ { print task; print substr($0, 1, 700); exit }' "$1"; }

# ---------------------------------------------------------------------------------------------------------------
step "preflight"
[ "$(id -u)" -eq 0 ] || abort "preflight" "run as root (the sandbox's namespace and Docker engine need it)"
exec 9>/tmp/crud-master-vagrant-stage.lock
flock -n 9 || abort "preflight" "another Vagrant stage is running (lock /tmp/crud-master-vagrant-stage.lock)"
missing=""
for pkg in vagrant docker.io slirp4netns debootstrap rsync; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  echo "installing:$missing (no service is started: the stage runs its own Docker engine in the sandbox)"
  policy_made=0
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 0755 /usr/sbin/policy-rc.d; policy_made=1; }
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing; } \
    > /tmp/crud-master-vagrant-stage-apt.log 2>&1
  code=$?
  [ "$policy_made" = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$code" -eq 0 ] || abort "preflight" "apt-get install$missing failed (/tmp/crud-master-vagrant-stage-apt.log)"
fi
for command in node npm psql nsenter ansible-playbook; do
  command -v "$command" >/dev/null || abort "preflight" "$command is missing here: make local installs it (make test runs it first)"
done
rm -rf "$logs" && mkdir -p "$logs"
# A run killed by SIGKILL leaves its engine, namespace and machines: the sandbox and its containers are ours by name.
"$sandbox" down > /dev/null 2>&1
# The engine and slirp4netns outlive this script with KEEP=1: they must not hold its lock.
"$sandbox" up > "$logs/sandbox.log" 2>&1 9>&- || abort "sandbox" "$(tail -3 "$logs/sandbox.log")"
stale=$(in_sandbox docker ps -aq --filter name=crud-master-)
[ -n "$stale" ] && in_sandbox docker rm -f $stale > /dev/null
in_sandbox docker network prune -f > /dev/null
pass "sandbox: a network namespace with NAT out and its own Docker engine ($(in_sandbox docker version -f '{{.Server.Version}}'))"

# ---------------------------------------------------------------------------------------------------------------
step "the checkout and its .env"
tmp=$(mktemp -d /var/tmp/vagrant-stage.XXXXXX)
checkout=$tmp/crud-master
# What git would have, plus uncommitted work; no .env, no .vagrant, no node_modules.
rsync -a --filter=':- .gitignore' --exclude=.git/ --exclude=.vagrant/ --exclude=node_modules/ --exclude=.env \
  --exclude=.test-results/ "$source_dir/" "$checkout/" || abort "setup" "could not copy $source_dir"
make -C "$checkout" --no-print-directory .env > /dev/null || abort "setup" "make .env failed in $checkout"
sed -i "s/^BILLING_VM_COUNT=.*/BILLING_VM_COUNT=$billing_vm_count/" "$checkout/.env"
# As a user's own checkout: the guests' vagrant user (uid 1000) owns /vagrant, as on VirtualBox's shared folder.
chown -R 1000:1000 "$checkout"
set -a
# shellcheck disable=SC1091
. "$checkout/.env"
set +a
pinned_node=$(sed -nE 's/^node_version:[[:space:]]*"?([0-9.]+)"?.*/\1/p' "$checkout/roles/node/defaults/main.yml")
# The client of the tests runs from the same checkout, with its own node_modules (while the machines come up).
(cd "$checkout" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error) > "$logs/npm-client.log" 2>&1 &
client_job=$!

# ---------------------------------------------------------------------------------------------------------------
step "make box BOX_FROM=debootstrap"
t0=$(date +%s)
if in_sandbox env BOX_FROM=debootstrap make -C "$checkout" --no-print-directory box > "$logs/box.log" 2>&1; then
  pass "make box: $(tail -1 "$logs/box.log" | sed 's/^box: //') ($(( $(date +%s) - t0 ))s)"
else
  abort "make box" "$(tail -5 "$logs/box.log")"
fi

step "make up PROVIDER=docker"
t0=$(date +%s)
if in_sandbox make -C "$checkout" --no-print-directory up PROVIDER=docker > "$logs/up.log" 2>&1; then
  pass "make up PROVIDER=docker: the ${#machines[@]} machines are up and provisioned ($(( $(date +%s) - t0 ))s)"
else
  fail "make up PROVIDER=docker ($(( $(date +%s) - t0 ))s)" "$(failed_task "$logs/up.log" | head -4)
$(grep -E '^(==> |An error|The SSH|Vagrant)' "$logs/up.log" | tail -4)
(log: $logs/up.log)"
fi
in_sandbox sh -c "cd '$checkout' && vagrant ssh-config" > "$tmp/ssh_config" 2> "$logs/ssh-config.log"
cat > "$tmp/on-vm" <<EOF
#!/usr/bin/env bash
# on-vm MACHINE COMMAND…: COMMAND as root on MACHINE over SSH with the key Vagrant made (vagrant ssh without
# Vagrant's start-up time; also E2E_*_EXEC of tests/support/hosts.ts).
vm=\$1; shift
exec ssh -F "$tmp/ssh_config" -q "\$vm" -- sudo -n "\$(printf '%q ' "\$@")"
EOF
chmod 0755 "$tmp/on-vm"
for vm in "${machines[@]}"; do
  grep -q "^Host $vm\$" "$tmp/ssh_config" || abort "vagrant ssh-config" "$vm is not running: $(tail -3 "$logs/ssh-config.log")"
done

# ---------------------------------------------------------------------------------------------------------------
step "the guests"
for vm in "${machines[@]}"; do
  facts=$(on_vm "$vm" sh -c 'echo "$(ps -o comm= -p 1) $(systemctl is-system-running) $(node --version)"' 2>&1)
  if [ "$facts" = "systemd running v$pinned_node" ]; then
    pass "$vm: systemd is PID 1 and running; node --version is v$pinned_node"
  else
    fail "$vm: systemd running and Node.js v$pinned_node (roles/node, node_version)" "PID 1, system state, node --version: $facts
$(on_vm "$vm" systemctl list-units --failed --plain --no-legend 2>&1 | head -5)"
  fi
done

# Each guest has its .env address on the private network, and inventory.ini agrees (make provision goes there).
for vm in "${machines[@]}"; do
  key=$(tr '[:lower:]-' '[:upper:]_' <<<"${vm%-vm}")_VM_IP
  [[ $vm == billing-vm-* ]] && key="BILLING_VM_IP + ${vm#billing-vm-} - 1"
  want=$(ip_of "$vm")
  has=$(on_vm "$vm" hostname -I 2>&1)
  listed=$(sed -nE "s/^$vm[[:space:]].*ansible_host=([^[:space:]]+).*/\1/p" "$checkout/inventory.ini")
  if [[ " $has " == *" $want "* ]] && [ "$listed" = "$want" ]; then
    pass "$vm is at $want ($key of .env), as inventory.ini says"
  else
    fail "$vm is at $want ($key of .env), as inventory.ini says" \
      "$vm has the addresses: $has; .env $key=$want; inventory.ini ansible_host=$listed. .env and inventory.ini must name the same address, inside the private network of the other machines."
  fi
done

gateway_env=$(on_vm gateway-vm cat /etc/crud-master/api-gateway.env 2>&1)
env_value() { printf '%s\n' "$gateway_env" | sed -n "s/^$1=//p" | tr -d "\"'" | tail -1; }
want_inventory_url="http://$INVENTORY_VM_IP:$INVENTORY_API_PORT"
# Every billing VM's broker, billing-vm first.
want_brokers=$(for vm in "${billing_vms[@]}"; do ip_of "$vm"; done | paste -sd,)
message=""
[ "$(env_value INVENTORY_API_URL)" = "$want_inventory_url" ] || message="INVENTORY_API_URL=$(env_value INVENTORY_API_URL), expected $want_inventory_url (INVENTORY_VM_IP:INVENTORY_API_PORT of .env). "
[ "$(env_value RABBITMQ_HOST)" = "$want_brokers" ] || message="${message}RABBITMQ_HOST=$(env_value RABBITMQ_HOST), expected $want_brokers (BILLING_VM_IP of .env, and the addresses after it for BILLING_VM_COUNT=$billing_vm_count). "
if [ -z "$message" ]; then
  pass "gateway-vm's api-gateway targets inventory-vm ($want_inventory_url) and $([ "$scale" = 1 ] && echo "every billing VM's RabbitMQ" || echo "billing-vm's RabbitMQ") ($want_brokers)"
else
  fail "gateway-vm's api-gateway targets the other machines" \
    "/etc/crud-master/api-gateway.env on gateway-vm: ${message}The play gives the gateway the wrong address of another machine (ansible/group_vars/all.yml: crud_master_inventory_ip, crud_master_billing_ip, crud_master_inventory_api_port)."
fi

reply=$(net_of gateway-vm curl -sS -m 5 -o /dev/null -w '%{http_code}' "$want_inventory_url/readyz" 2>&1)
if [ "$reply" = 200 ]; then
  pass "inventory-vm's inventory-api answers gateway-vm on $want_inventory_url (/readyz 200)"
else
  fail "inventory-vm's inventory-api answers gateway-vm on $want_inventory_url" \
    "GET $want_inventory_url/readyz from gateway-vm: $reply. inventory-api does not listen on INVENTORY_VM_IP:INVENTORY_API_PORT, or is not ready."
fi

# ---------------------------------------------------------------------------------------------------------------
wait "$client_job" || abort "client" "npm ci of the test client failed (log: $logs/npm-client.log)"
# A mocha suite from the client, in the sandbox; it counts its own tests (a run that dies early: one failure more).
suite() {
  local name=$1; shift
  (cd "$checkout" && in_sandbox env "$@") > "$logs/$name.log" 2>&1
  local code=$? passing failing
  sed 's/^/  | /' "$logs/$name.log" | grep -Ev '^\s*\|\s*$' | head -120
  passing=$(grep -Eo '^ +[0-9]+ passing' "$logs/$name.log" | grep -Eo '[0-9]+' | tail -1)
  failing=$(grep -Eo '^ +[0-9]+ failing' "$logs/$name.log" | grep -Eo '[0-9]+' | tail -1)
  passed=$((passed + ${passing:-0}))
  failed=$((failed + ${failing:-0}))
  [ -n "$failing" ] && failures+=("$name: $failing failing (log: $logs/$name.log)")
  if [ "$code" -ne 0 ] && [ -z "$failing" ]; then fail "$name" "mocha exited with $code before its summary (log: $logs/$name.log)"; fi
}

if [ "$scale" = 0 ]; then
  step "end-to-end suite against gateway-vm's :$GATEWAY_PORT (forwarded), pm2 and psql over SSH"
  # The firewalls let only gateway-vm reach inventory-api and AMQP, and billing-consumer's health port is on loopback:
  # the suite reaches them through SSH tunnels from the sandbox, as an operator would. The metrics it scrapes directly, on
  # the private IPs: the firewalls let the host in (crud_master_metrics_scrapers).
  tunnel_inventory=18081 tunnel_billing_health=18082 tunnel_amqp=15673
  open_tunnel() { # VM -L SPEC…
    local vm=$1; shift
    in_sandbox ssh -F "$tmp/ssh_config" -q -N -o ExitOnForwardFailure=yes "$@" "$vm" > /dev/null 2>> "$logs/tunnels.log" &
    tunnels+=($!)
  }
  open_tunnel gateway-vm -L "127.0.0.1:$tunnel_inventory:$INVENTORY_VM_IP:$INVENTORY_API_PORT" \
    -L "127.0.0.1:$tunnel_amqp:$BILLING_VM_IP:$RABBITMQ_PORT"
  open_tunnel billing-vm -L "127.0.0.1:$tunnel_billing_health:127.0.0.1:$BILLING_HEALTH_PORT"
  for port in $tunnel_inventory $tunnel_amqp $tunnel_billing_health; do
    for _ in $(seq 50); do in_sandbox bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null && break; sleep 0.2; done
  done
  suite e2e \
    E2E_GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT" \
    E2E_INVENTORY_URL="http://127.0.0.1:$tunnel_inventory" \
    E2E_BILLING_HEALTH_URL="http://127.0.0.1:$tunnel_billing_health" \
    E2E_RABBITMQ_HOST=127.0.0.1 E2E_RABBITMQ_PORT="$tunnel_amqp" \
    E2E_RABBITMQ_API_URL="http://127.0.0.1:$RABBITMQ_UI_PORT/api" \
    E2E_GATEWAY_METRICS_HOST="$GATEWAY_VM_IP" E2E_INVENTORY_METRICS_HOST="$INVENTORY_VM_IP" \
    E2E_BILLING_METRICS_HOST="$BILLING_VM_IP" E2E_RABBITMQ_METRICS_URL="http://$BILLING_VM_IP:$RABBITMQ_PROMETHEUS_PORT" \
    E2E_GATEWAY_EXEC="$tmp/on-vm gateway-vm" \
    E2E_INVENTORY_EXEC="$tmp/on-vm inventory-vm" \
    E2E_BILLING_EXEC="$tmp/on-vm billing-vm" \
    timeout --kill-after=10 900 npx mocha --exit 'tests/e2e/**/*.test.ts'
  close_tunnels
fi

step "Postman collection against gateway-vm's :$GATEWAY_PORT"
(cd "$checkout" && in_sandbox npx newman run postman/crud-master.postman_collection.json \
  --env-var "baseUrl=http://127.0.0.1:$GATEWAY_PORT" --reporters cli,json --reporter-json-export "$logs/postman.json") \
  > "$logs/postman.log" 2>&1
counts=$(node -e 'const { total, failed } = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).run.stats.assertions;
  console.log(total - failed, failed)' "$logs/postman.json" 2>/dev/null) || counts="0 1"
if [ "${counts#* }" = 0 ]; then
  pass "Postman collection: ${counts% *} assertions passed"
else
  fail "Postman collection: ${counts#* } of $(( ${counts% *} + ${counts#* } )) assertions failed" \
    "$(grep -E '^ *[0-9]+\. ' "$logs/postman.log" | head -5) (log: $logs/postman.log)"
fi

if [ "$scale" = 0 ]; then
  step "the seed's scenario over vagrant ssh, and a reboot of the three machines"
  suite vm-path VAGRANT_CWD="$checkout" \
    E2E_GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT" E2E_RABBITMQ_API_URL="http://127.0.0.1:$RABBITMQ_UI_PORT/api" \
    timeout --kill-after=10 1200 npx mocha --exit tests/vagrant/vm-path.test.ts
fi
if [ "$scale" = 1 ]; then
  step "the RabbitMQ cluster of the ${#billing_vms[@]} billing VMs, and orders while a broker stops and a billing VM halts"
else
  step "orders while billing-vm's broker stops and restarts, then billing-vm halts and comes back (the figures to compare with make scale-test)"
fi
suite scale VAGRANT_CWD="$checkout" SCALE_ON_VM="$tmp/on-vm" \
  E2E_GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT" E2E_RABBITMQ_API_URL="http://127.0.0.1:$RABBITMQ_UI_PORT/api" \
  timeout --kill-after=10 2400 npx mocha --exit tests/vagrant/scale.test.ts
# The guests' SSH addresses may change with a reboot or a halt.
in_sandbox sh -c "cd '$checkout' && vagrant ssh-config" > "$tmp/ssh_config" 2>> "$logs/ssh-config.log"

# ---------------------------------------------------------------------------------------------------------------
step "make provision-idempotent PROVIDER=docker: ansible-playbook over SSH, inventory.ini"
t0=$(date +%s)
if in_sandbox make -C "$checkout" --no-print-directory provision-idempotent PROVIDER=docker > "$logs/provision.log" 2>&1; then
  pass "make provision reports changed=0 on every host ($(( $(date +%s) - t0 ))s)"
else
  fail "make provision reports changed=0 on every host" "$(grep -E '^(FAIL|fatal|changed|failed)' "$logs/provision.log" | head -8 | cut -c1-300)
(log: $logs/provision.log)"
fi

# ---------------------------------------------------------------------------------------------------------------
step "isolation: a machine gets only what it needs"
check_pg_refused() { # DB_VM DB_IP FROM_VM USER PASSWORD DB
  local db_vm=$1 db_ip=$2 from=$3 user=$4 password=$5 db=$6 reply
  local name="$db_vm's PostgreSQL refuses $user from $from"
  # the password goes on stdin: sudo on the guest would log a command line that holds it
  reply=$(on_vm "$db_vm" sh -c 'IFS= read -r PGPASSWORD; export PGPASSWORD; exec psql "$1" -XwtAc "select 1"' psql \
    "host=127.0.0.1 user=$user dbname=$db connect_timeout=5" <<<"$password" 2>&1)
  [ "$reply" = 1 ] || { fail "$name" "the control failed: $user cannot log in to $db on $db_vm itself: $reply"; return; }
  reply=$(PGPASSWORD=$password net_of "$from" psql "host=$db_ip user=$user dbname=$db connect_timeout=5 sslmode=disable" -XwtAc 'select 1' 2>&1)
  case $reply in
    1) fail "$name" "$db_vm's PostgreSQL ACCEPTED $user@$db from $from: pg_hba.conf (roles/postgres, postgres_hba_allowed_hosts) lets in a machine that does not need the database." ;;
    *"no pg_hba.conf entry"*) pass "$name: pg_hba.conf has no entry for it" ;;
    *"Connection refused"*) pass "$name: PostgreSQL does not listen there" ;;
    *) fail "$name" "unexpected answer (neither pg_hba.conf nor a refused connection): $reply" ;;
  esac
}
check_pg_refused inventory-vm "$INVENTORY_VM_IP" billing-vm "$INVENTORY_DB_USER" "$INVENTORY_DB_PASSWORD" "$INVENTORY_DB_NAME"
check_pg_refused billing-vm "$BILLING_VM_IP" gateway-vm "$BILLING_DB_USER" "$BILLING_DB_PASSWORD" "$BILLING_DB_NAME"
# The other billing VMs' consumers write to billing_db on billing-vm: over its private IP, with the password.
for vm in "${billing_vms[@]:1}"; do
  name="billing-vm's PostgreSQL accepts $BILLING_DB_USER from $vm"
  reply=$(PGPASSWORD=$BILLING_DB_PASSWORD net_of "$vm" psql "host=$BILLING_VM_IP user=$BILLING_DB_USER dbname=$BILLING_DB_NAME connect_timeout=5 sslmode=disable" -XwtAc 'select 1' 2>&1)
  if [ "$reply" = 1 ]; then
    pass "$name (scram-sha-256 over $BILLING_VM_IP)"
  else
    fail "$name" "psql from $vm to $BILLING_VM_IP: $reply. PostgreSQL must listen on BILLING_VM_IP, pg_hba.conf let the billing VMs in and billing-vm's firewall open 5432 to them (crud_master_postgres_*)."
  fi
done

amqp_login() { # FROM_VM USER PASSWORD [BROKER_IP]
  (cd "$checkout" && net_of "$1" node --import tsx tests/vagrant/amqp-login.ts "${4:-$BILLING_VM_IP}" "$RABBITMQ_PORT" "$2" "$3" "$RABBITMQ_VHOST" 2>&1)
}
for vm in "${billing_vms[@]}"; do
  reply=$(amqp_login gateway-vm "$RABBITMQ_PUBLISHER_USER" "$RABBITMQ_PUBLISHER_PASSWORD" "$(ip_of "$vm")")
  if [ "$reply" = accepted ]; then
    pass "$vm's RabbitMQ accepts api-gateway's user (the publisher) from gateway-vm"
  else
    fail "$vm's RabbitMQ accepts api-gateway's user (the publisher) from gateway-vm" "AMQP login as $RABBITMQ_PUBLISHER_USER: $reply"
  fi
done
name="billing-vm's RabbitMQ refuses guest"
reply=$(amqp_login gateway-vm guest guest)
management=$(in_sandbox curl -sS -m 5 -o /dev/null -w '%{http_code}' -u guest:guest "http://127.0.0.1:$RABBITMQ_UI_PORT/api/whoami" 2>&1)
case $reply in
  *ACCESS_REFUSED*|*403*)
    if [ "$management" = 401 ]; then
      pass "$name (AMQP from gateway-vm: ACCESS_REFUSED; the management API through the forwarded port: 401)"
    else
      fail "$name" "the management API on the forwarded port $RABBITMQ_UI_PORT answered guest with $management, not 401"
    fi ;;
  accepted) fail "$name" "RabbitMQ on billing-vm ACCEPTED guest/guest from gateway-vm (roles/rabbitmq: rabbitmq_remove_guest, loopback_users)" ;;
  *) fail "$name" "unexpected answer (not a refused login): $reply" ;;
esac

# Who reaches what: each guest's firewall (roles/firewall) and the listeners' addresses. A refused port answers at
# once (TCP reset); `timeout` only bounds a silent drop. FROM "host" is the sandbox, which holds the host's address on
# the private network (its .1, one of crud_master_host_addresses).
reaches() { # FROM IP PORT: exit 0 when a TCP connection opens
  if [ "$1" = host ]; then
    in_sandbox timeout 5 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null
  else
    net_of "$1" timeout 5 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null
  fi
}
check_reach() { # FROM IP PORT WHAT yes|no
  local from=$1 ip=$2 port=$3 what=$4 want=$5 got=no
  reaches "$from" "$ip" "$port" && got=yes
  if [ "$got" = "$want" ]; then
    pass "$from $([ "$want" = yes ] && echo reaches || echo 'cannot reach') $what ($ip:$port)"
  else
    fail "$from $([ "$want" = yes ] && echo reaches || echo 'cannot reach') $what ($ip:$port)" \
      "a TCP connection from $from to $ip:$port $([ "$got" = yes ] && echo opened || echo failed). The firewall (roles/firewall, crud_master_firewall_allowed_tcp in ansible/group_vars/all.yml) or the listener's address is wrong."
  fi
}
for vm in "${machines[@]}"; do
  rules=$(on_vm "$vm" nft list table inet firewall 2>&1)
  if grep -q 'policy drop' <<<"$rules"; then
    pass "$vm: nftables loads the firewall table (inbound policy drop)"
  else
    fail "$vm: nftables loads the firewall table (inbound policy drop)" "nft list table inet firewall: $(head -3 <<<"$rules")"
  fi
done
check_reach gateway-vm "$INVENTORY_VM_IP" "$INVENTORY_API_PORT" inventory-api yes
check_reach billing-vm "$INVENTORY_VM_IP" "$INVENTORY_API_PORT" inventory-api no
for vm in "${billing_vms[@]}"; do
  ip=$(ip_of "$vm")
  check_reach gateway-vm "$ip" "$RABBITMQ_PORT" "RabbitMQ's AMQP" yes
  check_reach inventory-vm "$ip" "$RABBITMQ_PORT" "RabbitMQ's AMQP" no
  for from in gateway-vm inventory-vm; do
    check_reach "$from" "$ip" 4369 epmd no
    check_reach "$from" "$ip" 25672 "Erlang distribution" no
    check_reach "$from" "$ip" "$RABBITMQ_UI_PORT" "the RabbitMQ management UI" no
    check_reach "$from" "$ip" "$BILLING_HEALTH_PORT" "billing-consumer's health port" no
    check_reach "$from" "$ip" "$RABBITMQ_PROMETHEUS_PORT" "RabbitMQ's Prometheus metrics" no
    check_reach "$from" "$ip" "$BILLING_METRICS_PORT" "billing-consumer's metrics" no
  done
done
if [ "$scale" = 1 ]; then
  # The billing VMs reach each other's epmd and Erlang distribution, and billing_db on billing-vm; nobody else does.
  for vm in "${billing_vms[@]:1}"; do
    check_reach "$vm" "$BILLING_VM_IP" 4369 epmd yes
    check_reach "$vm" "$BILLING_VM_IP" 25672 "Erlang distribution" yes
    check_reach billing-vm "$(ip_of "$vm")" 4369 epmd yes
    check_reach billing-vm "$(ip_of "$vm")" 25672 "Erlang distribution" yes
    check_reach "$vm" "$BILLING_VM_IP" 5432 "PostgreSQL (billing_db)" yes
  done
  for from in gateway-vm inventory-vm; do
    check_reach "$from" "$BILLING_VM_IP" 5432 "PostgreSQL (billing_db)" no
  done
  check_reach "${billing_vms[1]}" "$(ip_of "${billing_vms[-1]}")" 5432 "PostgreSQL (none but billing-vm's)" no
fi
check_reach billing-vm "$INVENTORY_VM_IP" "$INVENTORY_METRICS_PORT" "inventory-api's metrics" no
check_reach inventory-vm "$GATEWAY_VM_IP" "$GATEWAY_METRICS_PORT" "api-gateway's metrics" no
check_reach billing-vm "$GATEWAY_VM_IP" "$GATEWAY_PORT" api-gateway yes
# The host scrapes the metrics (crud_master_metrics_scrapers), and still reaches inventory-api only through the gateway.
check_reach host "$INVENTORY_VM_IP" "$INVENTORY_API_PORT" inventory-api no
for vm in "${billing_vms[@]}"; do
  ip=$(ip_of "$vm")
  reply=$(in_sandbox curl -sS -m 5 "http://$ip:$RABBITMQ_PROMETHEUS_PORT/metrics" 2>&1)
  if grep -q '^rabbitmq_queue_messages_ready ' <<<"$reply"; then
    pass "the host scrapes $vm's RabbitMQ metrics ($ip:$RABBITMQ_PROMETHEUS_PORT/metrics)"
  else
    fail "the host scrapes $vm's RabbitMQ metrics ($ip:$RABBITMQ_PROMETHEUS_PORT/metrics)" \
      "GET /metrics: $(head -c 300 <<<"$reply"). rabbitmq_prometheus must listen on the VM's private IP (roles/rabbitmq) and its firewall let the scrapers in (crud_master_metrics_scrapers)."
  fi
done
reply=$(in_sandbox curl -sS -m 5 -o /dev/null -w '%{http_code}' -u "$RABBITMQ_USER:$RABBITMQ_PASSWORD" \
  "http://127.0.0.1:$RABBITMQ_UI_PORT/api/whoami" 2>&1)
if [ "$reply" = 200 ]; then
  pass "the host reaches the RabbitMQ management UI through the forwarded port :$RABBITMQ_UI_PORT"
else
  fail "the host reaches the RabbitMQ management UI through the forwarded port :$RABBITMQ_UI_PORT" \
    "GET /api/whoami as $RABBITMQ_USER: $reply. The firewall of billing-vm must let the host in (crud_master_host_addresses)."
fi

# ---------------------------------------------------------------------------------------------------------------
step "secrets: each machine holds only its own"
# The group's secrets, as the Vagrantfile and the play read them (group_vars/all.yml).
secrets_of() {
  python3 -c 'import sys, yaml; print(" ".join(yaml.safe_load(open(sys.argv[1]))["crud_master_group_secrets"][sys.argv[2]]))' \
    "$checkout/ansible/group_vars/all.yml" "$1"
}
# Files of VM holding any of the values on stdin (grep reads them from stdin: they never reach a command line).
files_with() { on_vm "$1" grep -rlsF -f /dev/stdin --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev --exclude-dir=run / 2>&1; }
for vm in "${machines[@]}"; do
  own=" $(secrets_of "$(group_of "$vm")") "
  mine=() others=() names=()
  for name in $(compgen -v | grep -E '_(PASSWORD|COOKIE)$'); do
    if [[ $own == *" $name "* ]]; then mine+=("${!name}"); else others+=("${!name}"); names+=("$name"); fi
  done
  found_own=$(printf '%s\n' "${mine[@]}" | files_with "$vm")
  found=$(printf '%s\n' "${others[@]}" | files_with "$vm")
  if [ -z "$found_own" ]; then
    fail "$vm holds only its own secrets" "the control failed: no file on $vm holds its own secrets ($own): the search finds nothing"
  elif [ -n "$found" ]; then
    fail "$vm holds only its own secrets" "files on $vm hold a secret of another machine (one of ${names[*]}): $(head -5 <<<"$found" | tr '\n' ' ')"
  else
    pass "$vm holds only its own secrets (${own# }found in $(wc -l <<<"$found_own") files; none of ${names[*]})"
  fi
done

# ---------------------------------------------------------------------------------------------------------------
step "the service user: crud-master runs PM2 and the apps, and has no sudo"
for vm in "${machines[@]}"; do
  # every PM2 daemon and app process, the user of the PM2 unit, and what sudo allows crud-master
  seen=$(on_vm "$vm" sh -c 'daemon=$(cat /var/lib/crud-master/.pm2/pm2.pid) && ps -o user:20= -p "$daemon" --ppid "$daemon";
    echo "unit: $(systemctl show -p User --value pm2-crud-master)"; sudo -l -U crud-master 2>&1 | tail -1' 2>&1)
  users=$(grep -v -e '^unit:' -e 'sudo' <<<"$seen" | sort -u | tr '\n' ' ')
  if [ "$users" = "crud-master " ] && grep -qx 'unit: crud-master' <<<"$seen" && grep -q 'not allowed to run sudo' <<<"$seen"; then
    pass "$vm: PM2 and its apps run as crud-master (its systemd unit too), which may not run sudo"
  else
    fail "$vm: PM2 and its apps run as crud-master, which may not run sudo" "users of PM2 and the apps: $users; $(grep -e '^unit:' -e sudo <<<"$seen" | tr '\n' ' ')"
  fi
done

# ---------------------------------------------------------------------------------------------------------------
step "make provision trusts only the SSH host keys that make up pinned"
pinned=$checkout/.vagrant/known_hosts
# A new SSH connection each time: a master connection that Ansible keeps for 60 s (ControlPersist, e.g. from make
# provision) was authenticated before, and a ping through it checks no host key.
ping_vm() {
  (cd "$checkout" && in_sandbox env ANSIBLE_CONFIG=ansible/ansible.cfg ANSIBLE_SSH_ARGS='-o ControlMaster=no -o ControlPath=none' \
    ansible -i inventory.ini "$1" -m ping -e vagrant_provider=docker 2>&1)
}
if [ "$(wc -l < "$pinned" 2>/dev/null)" != "${#machines[@]}" ]; then
  fail "make up pinned the ${#machines[@]} machines' host keys" "$pinned: $(cat "$pinned" 2>&1)"
else
  cp "$pinned" "$tmp/known_hosts.good"
  # billing-vm's line now carries gateway-vm's key: a machine that answers with another key is an impostor.
  awk '$1 == "gateway-vm" { key = $2 " " $3 } { lines[NR] = $0; names[NR] = $1 }
    END { for (i = 1; i <= NR; i++) print (names[i] == "billing-vm" ? "billing-vm " key : lines[i]) }' \
    "$tmp/known_hosts.good" > "$pinned"
  impostor=$(ping_vm billing-vm)
  cp "$tmp/known_hosts.good" "$pinned"
  genuine=$(ping_vm billing-vm)
  if [[ $genuine != *SUCCESS* ]]; then
    fail "make provision checks the pinned host keys" "the control failed: ansible -m ping billing-vm with the pinned keys: $(tail -3 <<<"$genuine")"
  elif [[ $impostor == *"Host key verification failed"* || $impostor == *"IDENTIFICATION HAS CHANGED"* ]]; then
    pass "make provision checks the pinned host keys: billing-vm with a wrong pinned key is refused (Host key verification failed)"
  else
    fail "make provision checks the pinned host keys" "ansible -m ping billing-vm with a wrong key pinned for it did not fail on the host key: $(tail -3 <<<"$impostor")"
  fi
fi

# ---------------------------------------------------------------------------------------------------------------
if [ "$keep" != 1 ]; then
  step "make destroy"
  t0=$(date +%s)
  in_sandbox make -C "$checkout" --no-print-directory destroy > "$logs/destroy.log" 2>&1
  left=$(in_sandbox docker ps -a --filter name=crud-master- --format '{{.Names}}'; in_sandbox docker network ls --filter name=vagrant_network --format '{{.Name}}')
  if [ -z "$left" ]; then
    pass "make destroy leaves no container and no network ($(( $(date +%s) - t0 ))s)"
  else
    fail "make destroy leaves no container and no network" "left behind: $(tr '\n' ' ' <<<"$left") (log: $logs/destroy.log)"
  fi
fi

teardown
summary
[ "$failed" -eq 0 ]
