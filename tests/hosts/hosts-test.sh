#!/usr/bin/env bash
# `make hosts-test`: proves the three-VM topology without VirtualBox.
#
# Three isolated hosts on this machine, gateway-vm, inventory-vm and billing-vm, each with its own network namespace
# (its address from a test .env, on a private test subnet joined by a bridge), hostname, IPC and PID namespaces, and
# filesystem (an overlay of / with its own upper directory: its own /etc, /var, /opt), so that each runs its own
# PostgreSQL, RabbitMQ and PM2 as the VMs do. Each host is provisioned from inside by the SAME ansible/site.yml and
# roles, limited to that host, as Vagrant's ansible_local does, with an inventory that mirrors inventory.ini (only the
# addresses differ). Then, from outside the hosts: the topology checks, the end-to-end suite against gateway-vm's
# :8080 (pm2 and psql run on billing-vm), the Postman collection when there is one, and the isolation checks.
# Everything is torn down at the end, also when a step fails. Traffic stays on the test bridge and inside the hosts.
#
# The last line: `hosts-test: N passed, M failed`; the exit code is non-zero when anything failed.
#
# Settings (environment):
#   HOSTS_TEST_SUBNET  first three octets of the private /24 of the test (10.203.0): .1 is the bridge, .10/.11/.12
#                      are gateway-vm, inventory-vm and billing-vm
#   HOSTS_TEST_SOURCE  the checkout to deploy and test (this repository); e.g. a copy with a deliberate bug
#   HOSTS_TEST_LOGS    where the logs go (.test-results/hosts-test)
#   HOSTS_TEST_KEEP=1  leave the hosts running at the end, to look around (`$HOSTS_TEST_DIR/enter billing-vm bash`);
#                      tear them down later with `tests/hosts/hosts-test.sh --down DIR`
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
source_dir=$(cd "${HOSTS_TEST_SOURCE:-$repo}" && pwd)
subnet=${HOSTS_TEST_SUBNET:-10.203.0}
logs=${HOSTS_TEST_LOGS:-$repo/.test-results/hosts-test}
keep=${HOSTS_TEST_KEEP:-0}

# Names of what this script creates on the machine (15 characters at most for interfaces).
bridge=cmhosts0
netns_of() { echo "cmhosts-$1"; }
veth_of() { case $1 in gateway-vm) echo cmh-gw ;; inventory-vm) echo cmh-inv ;; billing-vm) echo cmh-bill ;; esac; }
hosts=(billing-vm inventory-vm gateway-vm)

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
step() { echo; echo "==> $*"; }
elapsed() { echo "$(( $(date +%s) - started ))s"; }

# ---------------------------------------------------------------------------------------------------------------
# Teardown: the hosts' init processes (their PID namespaces die with them: every process of the host, and with the
# last process the mounts), the network namespaces, the bridge, the temp dir. Idempotent; runs on every exit.
# The root-namespace PID of a host's init, from DIR/hosts/NAME/init.pid, if that process still is one (PID 1 of a PID
# namespace other than ours): a stale file never makes us signal an unrelated process.
host_init() {
  local pid
  pid=$(cat "$1/hosts/$2/init.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -e "/proc/$pid" ] || return 1
  [ "$(readlink "/proc/$pid/ns/pid")" != "$(readlink /proc/self/ns/pid)" ] || return 1
  grep -qs '^NSpid:.*[[:space:]]1$' "/proc/$pid/status" || return 1
  echo "$pid"
}

teardown_dir() {
  local dir=$1 name pid ns waited
  for name in "${hosts[@]}"; do
    pid=$(host_init "$dir" "$name") || continue
    kill -TERM "$pid" 2>/dev/null
  done
  for name in "${hosts[@]}"; do
    pid=$(host_init "$dir" "$name") || continue
    waited=0
    while host_init "$dir" "$name" >/dev/null && [ "$waited" -lt 50 ]; do sleep 0.2; waited=$((waited + 1)); done
    pid=$(host_init "$dir" "$name") && kill -KILL "$pid" 2>/dev/null
    waited=0
    while host_init "$dir" "$name" >/dev/null && [ "$waited" -lt 50 ]; do sleep 0.2; waited=$((waited + 1)); done
    rm -f "$dir/hosts/$name/init.pid"
  done
  for name in "${hosts[@]}"; do
    ns=$(netns_of "$name")
    [ -e "/run/netns/$ns" ] && ip netns delete "$ns" 2>/dev/null
    ip link show "$(veth_of "$name")" >/dev/null 2>&1 && ip link delete "$(veth_of "$name")" 2>/dev/null
  done
  ip link show "$bridge" >/dev/null 2>&1 && ip link delete "$bridge" 2>/dev/null
  # Nothing of the hosts is mounted in this mount namespace (theirs were private); refuse to delete through a mount.
  if grep -q " $dir/" /proc/self/mounts; then
    echo "hosts-test: $dir still has mounts; not deleting it" >&2
  else
    rm -rf "$dir"
  fi
}

if [ "${1:-}" = --down ]; then
  teardown_dir "$2"
  exit 0
fi

tmp=""
torn_down=0
teardown() {
  [ "$torn_down" = 1 ] && return
  torn_down=1
  [ -n "$tmp" ] || return
  if [ "$keep" = 1 ]; then
    echo "hosts-test: HOSTS_TEST_KEEP=1, the hosts keep running: $tmp/enter <host> <command>;" \
      "tear down with: $0 --down $tmp"
    return
  fi
  teardown_dir "$tmp"
}
trap 'teardown' EXIT
trap 'echo "hosts-test: interrupted"; exit 130' INT TERM

summary() {
  echo
  echo "hosts-test: took $(elapsed); logs in $logs"
  if [ "${#failures[@]}" -gt 0 ]; then
    echo "hosts-test: what failed:"
    printf '  - %s\n' "${failures[@]}" | cut -c1-400
  fi
  echo "hosts-test: $passed passed, $failed failed"
}

# Fails the whole run now (a step that the rest depends on): teardown, summary, exit 1.
abort() {
  fail "$1" "$2"
  teardown
  summary
  exit 1
}

# ---------------------------------------------------------------------------------------------------------------
step "preflight"
[ "$(id -u)" -eq 0 ] || abort "preflight" "run as root (namespaces, mounts and the bridge need it): sudo make hosts-test"
for command in ip unshare nsenter chroot mount rsync python3 node npm ansible-playbook psql curl flock openssl; do
  command -v "$command" >/dev/null || abort "preflight" "$command is missing on this machine (make deps-ansible installs Ansible)"
done
case $subnet in
  10.*|192.168.*|172.1[6-9].*|172.2[0-9].*|172.3[01].*) ;;
  *) abort "preflight" "HOSTS_TEST_SUBNET=$subnet is not a private (RFC 1918) subnet" ;;
esac
# Only one run at a time: the bridge and the subnet are the same.
exec 9>/tmp/crud-master-hosts-test.lock
flock -n 9 || abort "preflight" "another make hosts-test is running (lock /tmp/crud-master-hosts-test.lock)"
# Leftovers of a run that was killed (SIGKILL skips the trap): ours by name.
for stale in /tmp/hosts-test.*; do
  [ -d "$stale/hosts" ] && { echo "removing the leftovers of an earlier run: $stale"; teardown_dir "$stale"; }
done
# The bridge and namespaces are ours by name, also when their temp dir is gone.
teardown_dir /nonexistent 2>/dev/null
if ip -4 -o addr show | grep -v " $bridge " | grep -q " inet $subnet\."; then
  abort "preflight" "the test subnet $subnet.0/24 is already used on this machine; set HOSTS_TEST_SUBNET"
fi
node_version=$(node --version | sed 's/^v//')
python3 -c "import sys; v=tuple(map(int,'$node_version'.split('.'))); sys.exit(0 if v >= (20,19,0) else 1)" \
  || abort "preflight" "Node.js $node_version on this machine: the hosts have no Internet to reach NodeSource; install Node.js >= 20.19 first (make local)"
# The hosts install their packages from this machine's apt lists and cache (they have no Internet): download the
# packages that are not installed here (download only: nothing is installed on, nor started on, this machine).
missing=""
for pkg in postgresql postgresql-contrib python3-psycopg2 rabbitmq-server acl sudo rsync; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  echo "downloading for the hosts:$missing"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --download-only $missing; } \
    || abort "preflight" "could not download$missing for the hosts"
fi
echo "  ok    preflight (Node.js $node_version, subnet $subnet.0/24)"

tmp=$(mktemp -d /tmp/hosts-test.XXXXXX)
chmod 0755 "$tmp"
shared=$tmp/shared
client=$tmp/client
mkdir -p "$shared/vagrant" "$shared/npm-cache" "$client" "$tmp/hosts"
rm -rf "$logs" && mkdir -p "$logs"

# ---------------------------------------------------------------------------------------------------------------
step "the test .env, the checkout and the inventory ($tmp)"
gateway_ip=$subnet.10
inventory_ip=$subnet.11
billing_ip=$subnet.12
ip_of() { case $1 in gateway-vm) echo "$gateway_ip" ;; inventory-vm) echo "$inventory_ip" ;; billing-vm) echo "$billing_ip" ;; esac; }

# The checkout as a VM's /vagrant sees it (what git would have, plus uncommitted work; no .env, no node_modules).
rsync -a --filter=':- .gitignore' --exclude=.git/ --exclude=.vagrant/ --exclude=node_modules/ --exclude=.env \
  --exclude=.test-results/ "$source_dir/" "$shared/vagrant/" || abort "setup" "could not copy $source_dir"

# The test .env: .env.example with the test subnet's addresses and a random value for each empty *_PASSWORD.
test_env=$shared/vagrant/.env
while IFS= read -r line || [ -n "$line" ]; do
  case $line in
    GATEWAY_VM_IP=*) echo "GATEWAY_VM_IP=$gateway_ip" ;;
    INVENTORY_VM_IP=*) echo "INVENTORY_VM_IP=$inventory_ip" ;;
    BILLING_VM_IP=*) echo "BILLING_VM_IP=$billing_ip" ;;
    [A-Za-z_]*_PASSWORD=) echo "$line$(openssl rand -hex 16)" ;;
    *) echo "$line" ;;
  esac
done < "$shared/vagrant/.env.example" > "$test_env"
for key in GATEWAY_VM_IP INVENTORY_VM_IP BILLING_VM_IP; do
  grep -q "^$key=$subnet\." "$test_env" || abort "setup" ".env.example has no $key= line: the test .env cannot set it"
done
chmod 0644 "$test_env"
set -a
# shellcheck disable=SC1090
. "$test_env"
set +a
echo "  gateway-vm $GATEWAY_VM_IP, inventory-vm $INVENTORY_VM_IP, billing-vm $BILLING_VM_IP (from $test_env)"

# The inventory: inventory.ini with the test .env's addresses; same groups, hosts and variables.
sed -E \
  -e "s/^(gateway-vm[[:space:]].*ansible_host=)[^[:space:]]+/\1$GATEWAY_VM_IP/" \
  -e "s/^(inventory-vm[[:space:]].*ansible_host=)[^[:space:]]+/\1$INVENTORY_VM_IP/" \
  -e "s/^(billing-vm[[:space:]].*ansible_host=)[^[:space:]]+/\1$BILLING_VM_IP/" \
  "$shared/vagrant/inventory.ini" > "$shared/inventory.ini"
for name in "${hosts[@]}"; do
  grep -Eq "^$name[[:space:]].*ansible_host=$(ip_of "$name")([[:space:]]|$)" "$shared/inventory.ini" \
    || abort "setup" "inventory.ini has no '$name ansible_host=…' line: the test inventory cannot mirror it"
done
for group in gateway inventory billing; do
  grep -q "^\[$group\]" "$shared/inventory.ini" || abort "setup" "inventory.ini has no [$group] group"
done

# ---------------------------------------------------------------------------------------------------------------
step "npm cache for the offline hosts, and the test client ($(elapsed))"
# The client (this machine, outside the hosts) runs the tests from the same checkout, with its own node_modules.
# Its `npm ci` warms a cache with every package of the lockfile; then the pinned PM2 is added. The hosts get a copy
# and run npm offline from it.
rsync -a "$shared/vagrant/" "$client/"
user_cache=$(npm config get cache 2>/dev/null)
[ -d "$user_cache/_cacache" ] && cp -a "$user_cache/_cacache" "$shared/npm-cache/"
pm2_version=$(sed -nE 's/^pm2_version:[[:space:]]*"?([^"[:space:]]+)"?.*/\1/p' "$shared/vagrant/roles/pm2/defaults/main.yml")
if ! (cd "$client" && npm ci --prefer-offline --cache "$shared/npm-cache" --no-audit --no-fund --loglevel=error) \
  > "$logs/npm-client.log" 2>&1; then
  abort "setup" "npm ci of the test client failed (log: $logs/npm-client.log)"
fi
if ! npm install --global --prefix "$tmp/pm2-warm" --prefer-offline --cache "$shared/npm-cache" --no-audit --no-fund \
  --loglevel=error "pm2@${pm2_version:?no pm2_version in roles/pm2/defaults/main.yml}" >> "$logs/npm-client.log" 2>&1; then
  abort "setup" "npm could not fetch pm2@$pm2_version (log: $logs/npm-client.log)"
fi
rm -rf "$tmp/pm2-warm" "$shared/npm-cache/_logs"
echo "  ok    npm cache ($(du -sh "$shared/npm-cache" | cut -f1)), pm2@$pm2_version"

# ---------------------------------------------------------------------------------------------------------------
step "boot the three hosts on $bridge ($subnet.1/24) ($(elapsed))"
cat > "$tmp/enter" <<EOF
#!/bin/sh
# enter HOST COMMAND…: runs COMMAND as root on HOST (gateway-vm, inventory-vm, billing-vm), like \`vagrant ssh\` + sudo.
pid=\$(cat "$tmp/hosts/\$1/init.pid") || exit 125
shift
exec nsenter --target "\$pid" --mount --uts --ipc --net --pid --root --wd -- \\
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb "\$@"
EOF
chmod 0755 "$tmp/enter"
enter="$tmp/enter"

ip link add "$bridge" type bridge || abort "boot" "could not create the bridge $bridge"
ip addr add "$subnet.1/24" dev "$bridge"
ip link set "$bridge" up

boot_host() {
  local name=$1 dir=$tmp/hosts/$1 ns veth upid pid waited=0
  ns=$(netns_of "$name")
  veth=$(veth_of "$name")
  mkdir -p "$dir/upper" "$dir/work" "$dir/merged"
  ip netns add "$ns" \
    && ip link add "$veth" type veth peer name eth0 netns "$ns" \
    && ip link set "$veth" master "$bridge" up \
    && ip -n "$ns" link set lo up \
    && ip -n "$ns" addr add "$(ip_of "$name")/24" dev eth0 \
    && ip -n "$ns" link set eth0 up \
    || return 1
  nsenter --net="/run/netns/$ns" -- unshare --mount --uts --ipc --pid --fork --propagation private -- \
    bash "$here/host-boot.sh" "$name" "$dir" "$shared" > "$logs/boot-$name.log" 2>&1 &
  upid=$!
  # The host's init is unshare's child (PID 1 in the host's PID namespace).
  while [ -z "${pid:-}" ] && [ "$waited" -lt 100 ]; do
    pid=$(cat "/proc/$upid/task/$upid/children" 2>/dev/null | awk '{print $1}')
    [ -n "$pid" ] || { sleep 0.1; waited=$((waited + 1)); }
  done
  [ -n "${pid:-}" ] || return 1
  echo "$pid" > "$dir/init.pid"
  waited=0
  while [ ! -e "$dir/booted" ] && kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 600 ]; do
    sleep 0.1; waited=$((waited + 1))
  done
  [ -e "$dir/booted" ] && kill -0 "$pid" 2>/dev/null
}

for name in "${hosts[@]}"; do
  if boot_host "$name" && [ "$("$enter" "$name" hostname)" = "$name" ]; then
    pass "$name boots: $(ip_of "$name") on its own network, hostname, PID namespace and overlay of /"
  else
    abort "$name boots" "$(tail -5 "$logs/boot-$name.log" 2>/dev/null)"
  fi
done

# ---------------------------------------------------------------------------------------------------------------
# Provisioning: inside each host, as Vagrant's ansible_local: /vagrant, ansible/ansible.cfg, --limit to the host.
provision() {
  local name=$1
  "$enter" "$name" env ANSIBLE_CONFIG=/vagrant/ansible/ansible.cfg ANSIBLE_NOCOLOR=1 PYTHONUNBUFFERED=1 \
    sh -c 'cd /vagrant && exec ansible-playbook -i /var/lib/hosts-test/inventory.ini ansible/site.yml --limit "$1" -c local' \
    sh "$name" > "$logs/provision-$name.log" 2>&1
}

# The task that failed, and Ansible's message, from a provisioning log.
failed_task() {
  awk '/^TASK \[/ { task = $0 } /^(fatal|failed):/ { print task; print substr($0, 1, 700); exit }' "$1"
}

report_provision() {
  local name=$1 code=$2 took=$3 log=$logs/provision-$1.log
  if [ "$code" -eq 0 ]; then
    pass "$name is provisioned by ansible/site.yml --limit $name (${took}s; $(grep -Eo "^$name +: ok=[0-9]+ +changed=[0-9]+" "$log" | sed 's/ \+/ /g'))"
  else
    fail "$name is provisioned by ansible/site.yml --limit $name" \
      "$(failed_task "$log")
(log: $log)"
  fi
}

step "provision billing-vm and inventory-vm (in parallel), then gateway-vm ($(elapsed))"
t0=$(date +%s)
provision billing-vm & billing_job=$!
provision inventory-vm & inventory_job=$!
wait "$billing_job"; billing_code=$?
report_provision billing-vm "$billing_code" $(( $(date +%s) - t0 ))
wait "$inventory_job"; inventory_code=$?
report_provision inventory-vm "$inventory_code" $(( $(date +%s) - t0 ))
t0=$(date +%s)
provision gateway-vm; gateway_code=$?
report_provision gateway-vm "$gateway_code" $(( $(date +%s) - t0 ))

# ---------------------------------------------------------------------------------------------------------------
# Runs a command in a host's network namespace only (this machine's files: its psql, node and the client's modules).
net_of() { local name=$1; shift; nsenter --net="/run/netns/$(netns_of "$name")" -- "$@"; }

step "topology: each host finds the others at the addresses of .env ($(elapsed))"
gateway_env=$("$enter" gateway-vm cat /etc/crud-master/api-gateway.env 2>&1)
env_value() { printf '%s\n' "$gateway_env" | sed -n "s/^$1=//p" | tr -d "\"'" | tail -1; }
want_inventory_url="http://$INVENTORY_VM_IP:$INVENTORY_API_PORT"
if [ "$(env_value INVENTORY_API_URL)" = "$want_inventory_url" ] && [ "$(env_value RABBITMQ_HOST)" = "$BILLING_VM_IP" ]; then
  pass "gateway-vm's api-gateway targets inventory-vm ($want_inventory_url) and billing-vm's RabbitMQ ($BILLING_VM_IP)"
elif ! printf '%s\n' "$gateway_env" | grep -q '^INVENTORY_API_URL='; then
  fail "gateway-vm's api-gateway targets the other hosts" \
    "/etc/crud-master/api-gateway.env on gateway-vm: $(printf '%s' "$gateway_env" | head -1) (was gateway-vm provisioned?)"
else
  message=""
  [ "$(env_value INVENTORY_API_URL)" = "$want_inventory_url" ] || message="INVENTORY_API_URL=$(env_value INVENTORY_API_URL), expected $want_inventory_url (INVENTORY_VM_IP:INVENTORY_API_PORT of .env). "
  [ "$(env_value RABBITMQ_HOST)" = "$BILLING_VM_IP" ] || message="${message}RABBITMQ_HOST=$(env_value RABBITMQ_HOST), expected $BILLING_VM_IP (BILLING_VM_IP of .env). "
  fail "gateway-vm's api-gateway targets the other hosts" \
    "/etc/crud-master/api-gateway.env on gateway-vm: ${message}The play gives the gateway the wrong address of another VM (ansible/group_vars/all.yml: crud_master_inventory_ip, crud_master_billing_ip, crud_master_inventory_api_port)."
fi

inventory_reply=$(net_of gateway-vm curl -sS -m 5 -o /dev/null -w '%{http_code}' "$want_inventory_url/readyz" 2>&1)
if [ "$inventory_reply" = 200 ]; then
  pass "inventory-vm's inventory-api answers gateway-vm on $want_inventory_url (/readyz 200)"
else
  fail "inventory-vm's inventory-api answers gateway-vm on $want_inventory_url" \
    "GET $want_inventory_url/readyz from gateway-vm: $inventory_reply. inventory-api does not listen on INVENTORY_VM_IP:INVENTORY_API_PORT, or is not ready."
fi

amqp_login() { # HOST(where from) USER PASSWORD
  (cd "$client" && net_of "$1" node --import tsx tests/hosts/amqp-login.ts "$BILLING_VM_IP" "$RABBITMQ_PORT" "$2" "$3" "$RABBITMQ_VHOST" 2>&1)
}
reply=$(amqp_login gateway-vm "$RABBITMQ_USER" "$RABBITMQ_PASSWORD")
if [ "$reply" = accepted ]; then
  pass "billing-vm's RabbitMQ accepts the .env user from gateway-vm ($BILLING_VM_IP:$RABBITMQ_PORT)"
else
  fail "billing-vm's RabbitMQ accepts the .env user from gateway-vm" \
    "AMQP login as $RABBITMQ_USER to $BILLING_VM_IP:$RABBITMQ_PORT from gateway-vm: $reply"
fi

# ---------------------------------------------------------------------------------------------------------------
step "end-to-end suite against gateway-vm's :$GATEWAY_PORT, from outside the hosts ($(elapsed))"
# A test that runs `pm2` on this machine instead of in a host (through E2E_*_EXEC, tests/support/hosts.ts) would
# drive this machine's own stack: a `pm2` first on the PATH refuses, and says so.
mkdir -p "$tmp/guard-bin"
cat > "$tmp/guard-bin/pm2" <<'GUARD'
#!/bin/sh
echo "hosts-test: 'pm2 $*' ran on this machine, not in a host: run it through onHost() of tests/support/hosts.ts (E2E_GATEWAY_EXEC, E2E_INVENTORY_EXEC, E2E_BILLING_EXEC)" >&2
exit 97
GUARD
chmod 0755 "$tmp/guard-bin/pm2"
(
  cd "$client" && env PATH="$tmp/guard-bin:$PATH" \
    E2E_GATEWAY_URL="http://$GATEWAY_VM_IP:$GATEWAY_PORT" \
    E2E_INVENTORY_URL="$want_inventory_url" \
    E2E_BILLING_HEALTH_URL="http://$BILLING_VM_IP:$BILLING_HEALTH_PORT" \
    E2E_RABBITMQ_API_URL="http://$BILLING_VM_IP:$RABBITMQ_UI_PORT/api" \
    E2E_GATEWAY_EXEC="$enter gateway-vm" \
    E2E_INVENTORY_EXEC="$enter inventory-vm" \
    E2E_BILLING_EXEC="$enter billing-vm" \
    timeout --kill-after=10 600 npx mocha --exit --reporter spec 'tests/e2e/**/*.test.ts'
) > "$logs/e2e.log" 2>&1
e2e_code=$?
[ "$e2e_code" -eq 124 ] && echo "  (the end-to-end suite was stopped after 600 s)"
sed 's/^/  | /' "$logs/e2e.log" | grep -Ev '^\s*\|\s*$' | head -150
e2e_passing=$(grep -Eo '^ +[0-9]+ passing' "$logs/e2e.log" | grep -Eo '[0-9]+' | tail -1)
e2e_failing=$(grep -Eo '^ +[0-9]+ failing' "$logs/e2e.log" | grep -Eo '[0-9]+' | tail -1)
passed=$((passed + ${e2e_passing:-0}))
failed=$((failed + ${e2e_failing:-0}))
[ -n "${e2e_failing:-}" ] && failures+=("end-to-end suite: $e2e_failing failing (log: $logs/e2e.log)")
if [ "$e2e_code" -ne 0 ] && [ -z "${e2e_failing:-}" ]; then
  fail "end-to-end suite" "mocha exited with $e2e_code before its summary (log: $logs/e2e.log)"
fi

# The Postman collection, when the repository has one (`make postman BASE_URL=…`).
if grep -q '^postman:' "$client/Makefile" 2>/dev/null; then
  step "Postman collection against gateway-vm ($(elapsed))"
  if make -C "$client" --no-print-directory postman BASE_URL="http://$GATEWAY_VM_IP:$GATEWAY_PORT" \
    > "$logs/postman.log" 2>&1; then
    pass "Postman collection (newman) against http://$GATEWAY_VM_IP:$GATEWAY_PORT ($(grep -E 'requests|assertions' "$logs/postman.log" \
      | awk -F'│' '{ gsub(/ /, "", $2); gsub(/ /, "", $3); printf "%s%s %s", sep, $3, $2; sep = ", " }') executed)"
  else
    fail "Postman collection (newman) against http://$GATEWAY_VM_IP:$GATEWAY_PORT" \
      "$(grep -E '^ *[0-9]+\. ' "$logs/postman.log" | sed -E 's/ +$//' | head -5)
(log: $logs/postman.log)"
  fi
else
  echo "  (no Postman collection yet: no 'postman' target in the Makefile)"
fi

# ---------------------------------------------------------------------------------------------------------------
step "isolation: a host gets only what it needs ($(elapsed))"
# inventory-vm's PostgreSQL: the inventory credentials work on inventory-vm itself, and are refused from billing-vm.
psql_as() { # WHERE(enter|net) HOST TARGET_IP USER PASSWORD DB
  local how=$1 host=$2 target=$3 user=$4 password=$5 db=$6
  local conninfo="host=$target port=5432 user=$user dbname=$db connect_timeout=5 sslmode=disable"
  if [ "$how" = enter ]; then
    "$enter" "$host" env PGPASSWORD="$password" psql "$conninfo" -tAc 'select 1' 2>&1
  else
    net_of "$host" env PGPASSWORD="$password" psql "$conninfo" -tAc 'select 1' 2>&1
  fi
}
check_pg_refused() { # DB_HOST DB_IP FROM_HOST USER PASSWORD DB
  local db_host=$1 db_ip=$2 from=$3 user=$4 password=$5 db=$6 reply
  local name="$db_host's PostgreSQL refuses $user from $from ($(ip_of "$from"))"
  reply=$(psql_as enter "$db_host" 127.0.0.1 "$user" "$password" "$db")
  if [ "$reply" != 1 ]; then
    fail "$name" "the control failed: $user cannot log in to $db on $db_host itself (127.0.0.1): $reply"
    return
  fi
  reply=$(psql_as net "$from" "$db_ip" "$user" "$password" "$db")
  case $reply in
    1) fail "$name" "$db_host's PostgreSQL ACCEPTED $user@$db from $from ($(ip_of "$from")): pg_hba.conf (roles/postgres, postgres_hba_allowed_hosts) lets in a host that does not need the database; only $db_host itself should." ;;
    *"no pg_hba.conf entry"*) pass "$name: pg_hba.conf has no entry for it" ;;
    *"Connection refused"*) pass "$name: PostgreSQL does not listen there" ;;
    *) fail "$name" "unexpected answer (neither pg_hba.conf nor a refused connection): $reply" ;;
  esac
}
check_pg_refused inventory-vm "$INVENTORY_VM_IP" billing-vm "$INVENTORY_DB_USER" "$INVENTORY_DB_PASSWORD" "$INVENTORY_DB_NAME"
check_pg_refused billing-vm "$BILLING_VM_IP" gateway-vm "$BILLING_DB_USER" "$BILLING_DB_PASSWORD" "$BILLING_DB_NAME"

# RabbitMQ: guest is refused from the gateway host, over AMQP and on the management API.
name="billing-vm's RabbitMQ refuses guest from gateway-vm"
reply=$(amqp_login gateway-vm guest guest)
management=$(net_of gateway-vm curl -sS -m 5 -o /dev/null -w '%{http_code}' -u guest:guest \
  "http://$BILLING_VM_IP:$RABBITMQ_UI_PORT/api/whoami" 2>&1)
case $reply in
  *ACCESS_REFUSED*|*403*)
    if [ "$management" = 401 ]; then
      pass "$name (AMQP: ACCESS_REFUSED; management API: 401)"
    else
      fail "$name" "the management API on $BILLING_VM_IP:$RABBITMQ_UI_PORT answered guest with $management, not 401"
    fi ;;
  accepted) fail "$name" "RabbitMQ on billing-vm ACCEPTED guest/guest from gateway-vm: the guest user exists and may log in from other hosts (roles/rabbitmq: rabbitmq_remove_guest, loopback_users)" ;;
  *) fail "$name" "unexpected answer (not a refused login): $reply" ;;
esac

# ---------------------------------------------------------------------------------------------------------------
if [ "$keep" != 1 ]; then
  step "teardown ($(elapsed))"
  host_pids=""
  for name in "${hosts[@]}"; do host_pids="$host_pids $(cat "$tmp/hosts/$name/init.pid" 2>/dev/null)"; done
  teardown
  leftovers=""
  for pid in $host_pids; do kill -0 "$pid" 2>/dev/null && leftovers="$leftovers process $pid;"; done
  for name in "${hosts[@]}"; do
    [ -e "/run/netns/$(netns_of "$name")" ] && leftovers="$leftovers netns $(netns_of "$name");"
  done
  ip link show "$bridge" >/dev/null 2>&1 && leftovers="$leftovers bridge $bridge;"
  [ -e "$tmp" ] && leftovers="$leftovers $tmp;"
  grep -q "hosts-test-" /proc/self/mounts && leftovers="$leftovers overlay mounts;"
  if [ -z "$leftovers" ]; then
    pass "teardown: no host process, mount, namespace, bridge or temp dir is left"
  else
    fail "teardown" "left behind:$leftovers"
  fi
fi

summary
[ "$failed" -eq 0 ]
