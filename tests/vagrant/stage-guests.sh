# Sourced by vagrant-stage.sh: each guest runs systemd and the pinned Node.js, is at the address that the
# Vagrantfile derived for it and the inventory resolves to, and the gateway's settings name the other machines.

step "the guests"
for vm in "${machines[@]}"; do
  facts=$(on_vm "$vm" sh -c 'echo "$(ps -o comm= -p 1) $(systemctl is-system-running) $(node --version)"' 2>&1)
  if [ "$facts" = "systemd running v$pinned_node" ]; then
    pass "$vm: systemd is PID 1 and running; node --version is v$pinned_node"
  else
    msg="PID 1, system state, node --version: $facts
$(on_vm "$vm" systemctl list-units --failed --plain --no-legend 2>&1 | head -5)"
    fail "$vm: systemd running and Node.js v$pinned_node (roles/node, node_version)" "$msg"
  fi
done

# The docker provider's guests hold no more than systemd and the roles need (the Vagrantfile's DOCKER_SYSTEMD_ARGS):
# root on a guest cannot write kernel.core_pattern (/proc/sys is read-only; it writes back the value it read, so a
# guest that can changes nothing), nor load a kernel module (no CAP_SYS_MODULE; init_module of an empty image is
# refused before the kernel reads it), and holds none of the capabilities below.
guest_power=$(cat <<'PY'
import ctypes, os
try:
    with open('/proc/sys/kernel/core_pattern') as f:
        pattern = f.read()
    with open('/proc/sys/kernel/core_pattern', 'w') as f:
        f.write(pattern)
    core = 'written'
except OSError as error:
    core = os.strerror(error.errno)
libc = ctypes.CDLL(None, use_errno=True)
module = 'loaded' if libc.init_module(b'', ctypes.c_ulong(0), b'') == 0 else os.strerror(ctypes.get_errno())
names = {9: 'LINUX_IMMUTABLE', 14: 'IPC_LOCK', 16: 'SYS_MODULE', 17: 'SYS_RAWIO', 19: 'SYS_PTRACE', 20: 'SYS_PACCT',
         22: 'SYS_BOOT', 25: 'SYS_TIME', 26: 'SYS_TTY_CONFIG', 28: 'LEASE', 30: 'AUDIT_CONTROL', 32: 'MAC_OVERRIDE',
         33: 'MAC_ADMIN', 34: 'SYSLOG', 35: 'WAKE_ALARM', 36: 'BLOCK_SUSPEND', 38: 'PERFMON', 39: 'BPF',
         40: 'CHECKPOINT_RESTORE'}
bounding = int(next(line for line in open('/proc/1/status') if line.startswith('CapBnd')).split()[1], 16)
held = [name for bit, name in names.items() if bounding >> bit & 1]
print(f"core_pattern: {core}; init_module: {module}; held: {' '.join(held) or 'none'}")
PY
)
for vm in "${machines[@]}"; do
  seen=$(on_vm "$vm" python3 - <<<"$guest_power" 2>&1)
  if [ "$seen" = "core_pattern: Read-only file system; init_module: Operation not permitted; held: none" ]; then
    msg="$vm: root cannot write kernel.core_pattern (read-only) nor load a module (refused), and holds no"
    pass "$msg CAP_SYS_MODULE, SYS_RAWIO, SYS_PTRACE, SYS_BOOT, MAC_ADMIN…"
  else
    msg="as root on $vm: $seen. The Vagrantfile's DOCKER_SYSTEMD_ARGS must grant only the capabilities systemd and"
    msg+=" the roles use, keep Docker's seccomp profile and /proc/sys read-only."
    fail "$vm: root cannot write kernel.core_pattern nor load a module, and holds no capability systemd does not need" \
      "$msg"
  fi
done

# Each guest is at the address that the Vagrantfile derived for it from .env (vm_ip, from .vagrant/inventory.json; the
# component test vm-topology checks that derivation), and the inventory sends make provision there.
resolved=$(cd "$checkout" && ANSIBLE_CONFIG=ansible/ansible.cfg \
  ansible -i .vagrant/inventory.json all -m debug -a var=ansible_host -o 2>&1)
for vm in "${machines[@]}"; do
  want=${vm_ip[$vm]}
  has=$(on_vm "$vm" hostname -I 2>&1)
  if [[ " $has " == *" $want "* ]] && grep -q "^$vm | SUCCESS => .*\"ansible_host\": \"$want\"" <<<"$resolved"; then
    pass "$vm is at $want, where the inventory resolves it"
  else
    msg="$vm has the addresses: $has; the inventory's ansible_host: $(grep "^$vm " <<<"$resolved" | tail -1)."
    msg+=" The Vagrantfile gives each machine its address on the private network, and writes it in the inventory."
    fail "$vm is at $want, where the inventory resolves it" "$msg"
  fi
done

gateway_env=$(on_vm gateway-vm cat /etc/crud-master/api-gateway.env 2>&1)
env_value() { printf '%s\n' "$gateway_env" | sed -n "s/^$1=//p" | tr -d "\"'" | tail -1; }
want_inventory_url="http://${vm_ip[inventory-vm]}:$INVENTORY_API_PORT"
# Every billing VM's broker, billing-vm first.
want_brokers=$(for vm in "${billing_vms[@]}"; do echo "${vm_ip[$vm]}"; done | paste -sd,)
message=""
[ "$(env_value INVENTORY_API_URL)" = "$want_inventory_url" ] \
  || message="INVENTORY_API_URL=$(env_value INVENTORY_API_URL), expected $want_inventory_url (inventory-vm's). "
[ "$(env_value RABBITMQ_HOST)" = "$want_brokers" ] \
  || message+="RABBITMQ_HOST=$(env_value RABBITMQ_HOST), expected $want_brokers (the billing VMs', billing-vm first). "
brokers="billing-vm's RabbitMQ"
[ "$scale" = 1 ] && brokers="every billing VM's RabbitMQ"
if [ -z "$message" ]; then
  pass "gateway-vm's api-gateway targets inventory-vm ($want_inventory_url) and $brokers ($want_brokers)"
else
  msg="/etc/crud-master/api-gateway.env on gateway-vm: ${message}The play gives the gateway the wrong address of"
  msg+=" another machine (ansible/group_vars/all/hosts.yml: crud_master_vm_ips, crud_master_billing_vms)."
  fail "gateway-vm's api-gateway targets the other machines" "$msg"
fi

reply=$(net_of gateway-vm curl -sS -m 5 -o /dev/null -w '%{http_code}' "$want_inventory_url/readyz" 2>&1)
if [ "$reply" = 200 ]; then
  pass "inventory-vm's inventory-api answers gateway-vm on $want_inventory_url (/readyz 200)"
else
  fail "inventory-vm's inventory-api answers gateway-vm on $want_inventory_url" \
    "GET $want_inventory_url/readyz from gateway-vm: $reply. inventory-api does not listen there, or is not ready."
fi

# monitor-vm (MONITOR_VM=true, the default): its Prometheus, through the host's forwarded port, scrapes every target of
# crud_master_scrape_configs, all up: itself and Alertmanager, 2 instances each of api-gateway and inventory-api
# (crud_master_http_instances), per billing VM its billing-consumer, RabbitMQ and RabbitMQ's queues, a node exporter
# per machine, and the PostgreSQL exporters of inventory-vm and billing-vm.
if [ "$MONITOR_VM" = true ]; then
  want=$(( 1 + 1 + 2 + 2 + 3 * billing_vm_count + ${#machines[@]} + 2 ))
  for _ in $(seq 30); do
    targets=$(in_sandbox curl -sS -m 5 "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/targets" 2>&1 | python3 -c '
import json, sys
targets = json.load(sys.stdin)["data"]["activeTargets"]
down = ["%s %s: %s" % (t["labels"]["job"], t["labels"]["instance"], t["lastError"])
        for t in targets if t["health"] != "up"]
print(len(targets), len(down), "; ".join(down))' 2>&1)
    read -r total down _ <<<"$targets"
    [ "$total" = "$want" ] && [ "$down" = 0 ] && break
    sleep 3
  done
  if [ "$total" = "$want" ] && [ "$down" = 0 ]; then
    pass "monitor-vm's Prometheus (the host's forwarded :$PROMETHEUS_PORT) scrapes all $want targets, every one up"
  else
    fail "monitor-vm's Prometheus scrapes all $want targets, every one up" "targets, down, which: $targets"
  fi
fi
