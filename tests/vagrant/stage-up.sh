# Sourced by vagrant-stage.sh: the sandbox, a copy of the checkout with a fresh .env, `make box`, `make up`, and the
# on-vm script that runs a command as root on a guest. Sets checkout, tmp, machines, billing_vms, vm_ip,
# vm_secrets and on_host (a command as the host-side steps run: no bash on PATH); exports .env.

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
  [ -e /usr/sbin/policy-rc.d ] \
    || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 0755 /usr/sbin/policy-rc.d; policy_made=1; }
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing; } \
    > /tmp/crud-master-vagrant-stage-apt.log 2>&1
  code=$?
  [ "$policy_made" = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$code" -eq 0 ] || abort "preflight" "apt-get install$missing failed (/tmp/crud-master-vagrant-stage-apt.log)"
fi
for command in node npm psql nsenter ansible-playbook; do
  command -v "$command" >/dev/null \
    || abort "preflight" "$command is missing here: make local installs it (make test runs it first)"
done
rm -rf "$logs" && mkdir -p "$logs"
# A run killed by SIGKILL leaves its engine, namespace and machines: the sandbox and its containers are ours by name.
"$sandbox" down > /dev/null 2>&1
# The engine and slirp4netns outlive this script with KEEP=1: they must not hold its lock.
"$sandbox" up > "$logs/sandbox.log" 2>&1 9>&- || abort "sandbox" "$(tail -3 "$logs/sandbox.log")"
stale=$(in_sandbox docker ps -aq --filter name=crud-master-)
[ -n "$stale" ] && in_sandbox docker rm -f $stale > /dev/null
in_sandbox docker network prune -f > /dev/null
msg="sandbox: a network namespace with NAT out and its own Docker engine"
msg+=" ($(in_sandbox docker version -f '{{.Server.Version}}'))"
pass "$msg"

# ---------------------------------------------------------------------------------------------------------------
step "the checkout and its .env"
tmp=$(mktemp -d /var/tmp/vagrant-stage.XXXXXX)
checkout=$tmp/crud-master
# What git would have, plus uncommitted work; no .env, no .vagrant, no node_modules.
rsync -a --filter=':- .gitignore' --exclude=.git/ --exclude=.vagrant/ --exclude=node_modules/ --exclude=.env \
  --exclude=.test-results/ "$source_dir/" "$checkout/" || abort "setup" "could not copy $source_dir"
# The host-side steps (make-env.sh, make box, make up, make provision) run as on a stock Mac: the Makefile's /bin/sh,
# and no bash on PATH.
"$repo/tests/support/no-bash-path.sh" "$tmp/no-bash" || abort "setup" "could not make a PATH without bash"
on_host() { in_sandbox env PATH="$tmp/no-bash" "$@"; }
on_host "$checkout/ansible/make-env.sh" "BILLING_VM_COUNT=$billing_vm_count" > /dev/null \
  || abort "setup" "ansible/make-env.sh failed in $checkout (no bash on PATH)"
dotenv_export "$checkout/.env"
# The machines as the Vagrantfile derives them from .env (`make inventory` writes .vagrant/inventory.json): names,
# billing-vm first, and each one's group, address and secrets, which the later phases check against.
on_host make -C "$checkout" --no-print-directory inventory || abort "setup" "make inventory failed in $checkout"
machines=() billing_vms=()
declare -A vm_ip=() vm_secrets=()
while read -r vm group ip secrets; do
  machines+=("$vm")
  vm_ip[$vm]=$ip vm_secrets[$vm]=$secrets
  [ "$group" = billing ] && billing_vms+=("$vm")
done < <(python3 -c 'import json, sys
for vm in json.load(open(sys.argv[1]))["all"]["vars"]["crud_master_vms"]:
    print(vm["name"], vm["group"], vm["ip"], *vm["secrets"])' "$checkout/.vagrant/inventory.json")
[ "${#billing_vms[@]}" = "$billing_vm_count" ] \
  || abort "setup" "the Vagrantfile derives ${#billing_vms[@]} billing VMs from $checkout/.env, not $billing_vm_count"
pinned_node=$(sed -nE 's/^node_version:[[:space:]]*"?([0-9.]+)"?.*/\1/p' "$checkout/roles/node/defaults/main.yml")
# The client of the tests runs from the same checkout, with its own node_modules and build (the suites' helpers import
# @crud-master/shared's dist), made while the machines come up. Its exit code goes to a file: `wait PID` would not
# do, since bash forgets a finished job's status once another child of it gets the same PID, and the stage starts more
# processes than pid_max (32768 on CI's machine) before it needs the client.
(cd "$checkout" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error \
  && npx tsc -b; echo $? > "$tmp/client.status") \
  > "$logs/npm-client.log" 2>&1 &

# ---------------------------------------------------------------------------------------------------------------
step "make box BOX_FROM=debootstrap"
t0=$(date +%s)
if on_host env BOX_FROM=debootstrap make -C "$checkout" --no-print-directory box > "$logs/box.log" 2>&1; then
  pass "make box: $(tail -1 "$logs/box.log" | sed 's/^box: //') ($(( $(date +%s) - t0 ))s)"
else
  abort "make box" "$(tail -5 "$logs/box.log")"
fi

step "make up PROVIDER=docker"
t0=$(date +%s)
if on_host make -C "$checkout" --no-print-directory up PROVIDER=docker > "$logs/up.log" 2>&1; then
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
  grep -q "^Host $vm\$" "$tmp/ssh_config" \
    || abort "vagrant ssh-config" "$vm is not running: $(tail -3 "$logs/ssh-config.log")"
done
