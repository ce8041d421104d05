# Sourced by vagrant-stage.sh: a machine gets only what it needs. Which databases and broker logins each guest gets,
# what each guest's firewall lets in, which secrets each holds, and that the service user has no sudo.

step "isolation: a machine gets only what it needs"
check_pg_refused() { # DB_VM DB_IP FROM_VM USER PASSWORD DB
  local db_vm=$1 db_ip=$2 from=$3 user=$4 password=$5 db=$6 reply msg
  local name="$db_vm's PostgreSQL refuses $user from $from"
  # the password goes on stdin: sudo on the guest would log a command line that holds it
  reply=$(on_vm "$db_vm" sh -c 'IFS= read -r PGPASSWORD; export PGPASSWORD; exec psql "$1" -XwtAc "select 1"' psql \
    "host=127.0.0.1 user=$user dbname=$db connect_timeout=5" <<<"$password" 2>&1)
  [ "$reply" = 1 ] \
    || { fail "$name" "the control failed: $user cannot log in to $db on $db_vm itself: $reply"; return; }
  reply=$(PGPASSWORD=$password net_of "$from" \
    psql "host=$db_ip user=$user dbname=$db connect_timeout=5 sslmode=disable" -XwtAc 'select 1' 2>&1)
  case $reply in
    1)
      msg="$db_vm's PostgreSQL ACCEPTED $user@$db from $from: pg_hba.conf (roles/postgres, postgres_hba_allowed_hosts)"
      msg+=" lets in a machine that does not need the database."
      fail "$name" "$msg" ;;
    *"no pg_hba.conf entry"*) pass "$name: pg_hba.conf has no entry for it" ;;
    *"Connection refused"*) pass "$name: PostgreSQL does not listen there" ;;
    *) fail "$name" "unexpected answer (neither pg_hba.conf nor a refused connection): $reply" ;;
  esac
}
check_pg_refused inventory-vm "$INVENTORY_VM_IP" billing-vm \
  "$INVENTORY_DB_USER" "$INVENTORY_DB_PASSWORD" "$INVENTORY_DB_NAME"
check_pg_refused billing-vm "$BILLING_VM_IP" gateway-vm "$BILLING_DB_USER" "$BILLING_DB_PASSWORD" "$BILLING_DB_NAME"
# The other billing VMs' consumers write to billing_db on billing-vm: over its private IP, with the password.
for vm in "${billing_vms[@]:1}"; do
  name="billing-vm's PostgreSQL accepts $BILLING_DB_USER from $vm"
  reply=$(PGPASSWORD=$BILLING_DB_PASSWORD net_of "$vm" \
    psql "host=$BILLING_VM_IP user=$BILLING_DB_USER dbname=$BILLING_DB_NAME connect_timeout=5 sslmode=disable" \
    -XwtAc 'select 1' 2>&1)
  if [ "$reply" = 1 ]; then
    pass "$name (scram-sha-256 over $BILLING_VM_IP)"
  else
    msg="psql from $vm to $BILLING_VM_IP: $reply. PostgreSQL must listen on BILLING_VM_IP, pg_hba.conf let the billing"
    msg+=" VMs in and billing-vm's firewall open 5432 to them (crud_master_postgres_*)."
    fail "$name" "$msg"
  fi
done

amqp_login() { # FROM_VM USER PASSWORD [BROKER_IP]
  (cd "$checkout" && net_of "$1" node --import tsx tests/vagrant/amqp-login.ts \
    "${4:-$BILLING_VM_IP}" "$RABBITMQ_PORT" "$2" "$3" "$RABBITMQ_VHOST" 2>&1)
}
for vm in "${billing_vms[@]}"; do
  reply=$(amqp_login gateway-vm "$RABBITMQ_PUBLISHER_USER" "$RABBITMQ_PUBLISHER_PASSWORD" "${vm_ip[$vm]}")
  if [ "$reply" = accepted ]; then
    pass "$vm's RabbitMQ accepts api-gateway's user (the publisher) from gateway-vm"
  else
    fail "$vm's RabbitMQ accepts api-gateway's user (the publisher) from gateway-vm" \
      "AMQP login as $RABBITMQ_PUBLISHER_USER: $reply"
  fi
done
name="billing-vm's RabbitMQ refuses guest"
reply=$(amqp_login gateway-vm guest guest)
management=$(in_sandbox curl -sS -m 5 -o /dev/null -w '%{http_code}' -u guest:guest \
  "http://127.0.0.1:$RABBITMQ_UI_PORT/api/whoami" 2>&1)
case $reply in
  *ACCESS_REFUSED*|*403*)
    if [ "$management" = 401 ]; then
      pass "$name (AMQP from gateway-vm: ACCESS_REFUSED; the management API through the forwarded port: 401)"
    else
      fail "$name" "the management API on the forwarded port $RABBITMQ_UI_PORT answered guest with $management, not 401"
    fi ;;
  accepted)
    msg="RabbitMQ on billing-vm ACCEPTED guest/guest from gateway-vm"
    msg+=" (roles/rabbitmq: rabbitmq_remove_guest, loopback_users)"
    fail "$name" "$msg" ;;
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
  local from=$1 ip=$2 port=$3 what=$4 want=$5 got=no msg
  reaches "$from" "$ip" "$port" && got=yes
  if [ "$got" = "$want" ]; then
    pass "$from $([ "$want" = yes ] && echo reaches || echo 'cannot reach') $what ($ip:$port)"
  else
    msg="a TCP connection from $from to $ip:$port $([ "$got" = yes ] && echo opened || echo failed). The firewall"
    msg+=" (roles/firewall, crud_master_firewall_allowed_tcp in ansible/group_vars/all/firewall.yml) or the"
    msg+=" listener's address is wrong."
    fail "$from $([ "$want" = yes ] && echo reaches || echo 'cannot reach') $what ($ip:$port)" "$msg"
  fi
}
for vm in "${machines[@]}"; do
  rules=$(on_vm "$vm" nft list table inet firewall 2>&1)
  if grep -q 'policy drop' <<<"$rules"; then
    pass "$vm: nftables loads the firewall table (inbound policy drop)"
  else
    fail "$vm: nftables loads the firewall table (inbound policy drop)" \
      "nft list table inet firewall: $(head -3 <<<"$rules")"
  fi
done
check_reach gateway-vm "$INVENTORY_VM_IP" "$INVENTORY_API_PORT" inventory-api yes
check_reach billing-vm "$INVENTORY_VM_IP" "$INVENTORY_API_PORT" inventory-api no
for vm in "${billing_vms[@]}"; do
  ip=${vm_ip[$vm]}
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
    check_reach billing-vm "${vm_ip[$vm]}" 4369 epmd yes
    check_reach billing-vm "${vm_ip[$vm]}" 25672 "Erlang distribution" yes
    check_reach "$vm" "$BILLING_VM_IP" 5432 "PostgreSQL (billing_db)" yes
  done
  for from in gateway-vm inventory-vm; do
    check_reach "$from" "$BILLING_VM_IP" 5432 "PostgreSQL (billing_db)" no
  done
  check_reach "${billing_vms[1]}" "${vm_ip[${billing_vms[-1]}]}" 5432 "PostgreSQL (none but billing-vm's)" no
  # An operator's cluster-wide command: the other nodes send their rows to the CLI tool's own distribution port.
  name="billing-vm's rabbitmqctl list_connections lists billing-consumer's connections on every node"
  # its own --timeout: timeout(1) would leave the CLI's Erlang node behind su, and the SSH session open
  listed=$(on_vm billing-vm rabbitmqctl -q --no-table-headers list_connections user pid --timeout 30 2>&1)
  missing=()
  for vm in "${billing_vms[@]}"; do
    grep -qF "$RABBITMQ_CONSUMER_USER"$'\t'"<rabbit@$vm." <<<"$listed" || missing+=("$vm")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    pass "$name"
  else
    msg="none listed on ${missing[*]} within 30 s: $(tail -c 300 <<<"$listed"). The other billing VMs must reach the"
    msg+=" CLI tools' ports (35672-35682, crud_master_firewall_billing_cluster_rules)."
    fail "$name" "$msg"
  fi
fi
check_reach billing-vm "$INVENTORY_VM_IP" "$INVENTORY_METRICS_PORT" "inventory-api's metrics" no
check_reach inventory-vm "$GATEWAY_VM_IP" "$GATEWAY_METRICS_PORT" "api-gateway's metrics" no
check_reach billing-vm "$GATEWAY_VM_IP" "$GATEWAY_PORT" api-gateway yes
# The exporters and the monitor's UIs: monitor-vm scrapes (its targets are all up, stage-guests.sh); the other VMs
# cannot, nor reach Prometheus.
if [ "$MONITOR_VM" = true ]; then
  check_reach monitor-vm "$INVENTORY_VM_IP" 9187 "PostgreSQL's exporter" yes
  check_reach gateway-vm "$INVENTORY_VM_IP" 9187 "PostgreSQL's exporter" no
  check_reach billing-vm "$GATEWAY_VM_IP" 9200 "the node exporter" no
  check_reach gateway-vm "$MONITOR_VM_IP" "$PROMETHEUS_PORT" Prometheus no
fi

# Issue 23's slow flood against gateway-vm: inventory-vm opens 15,000 slow connections to :8080 (each a POST head,
# then a body byte every 500 ms; tests/vagrant/slow-flood-stage.ts). gateway-vm's firewall holds that address to
# FIREWALL_MAX_CONNECTIONS_PER_SOURCE (past the cap, or past the burst of new ones, a TCP reset: the cap's rule counts
# its own), the gateway closes the ones it holds within its request timeout, and billing-vm, another address, gets
# every GET /api/movies answered meanwhile; no api-gateway instance restarts.
cap=$FIREWALL_MAX_CONNECTIONS_PER_SOURCE
name="gateway-vm under 15,000 slow connections from one address: the firewall holds it to $cap, the gateway closes"
name+=" them in time, and another address is served meanwhile"
cap_refusals() { # the packets that the cap's rules of gateway-vm have refused
  on_vm gateway-vm nft list chain inet firewall input 2>/dev/null | grep -F "over $cap connections from one address" \
    | grep -oE 'packets [0-9]+' | awk '{ sum += $2 } END { print sum + 0 }'
}
gateway_pids() { on_vm gateway-vm pm2 pid api-gateway 2>&1 | tr -s '\n' ' '; }
before=$(cap_refusals)
pids_before=$(gateway_pids)
inventory_pid=$(in_sandbox docker inspect -f '{{.State.Pid}}' crud-master-inventory-vm)
flood=$(cd "$checkout" && net_of billing-vm node --import tsx tests/vagrant/slow-flood-stage.ts "$GATEWAY_VM_IP" \
  "$GATEWAY_PORT" "/proc/$inventory_pid/ns/net" "$cap" "$HTTP_REQUEST_TIMEOUT_MS" 2>&1 | tail -n 1)
refused=$(( $(cap_refusals) - before ))
pids_after=$(gateway_pids)
if [[ $flood == ok* ]] && [ "$refused" -ge 1 ] && [ "$pids_after" = "$pids_before" ]; then
  pass "$name (${flood#ok }; $refused refused by the cap's rule; api-gateway pids $pids_after)"
else
  msg="${flood:0:1500}; refused by the cap's rule: $refused; api-gateway pids before: $pids_before, after: $pids_after."
  msg+=" gateway-vm's nftables must cap the connections per source address (roles/firewall: per_source_limits,"
  msg+=" firewall_max_connections_per_source), and each gateway instance close a slow request within"
  msg+=" HTTP_REQUEST_TIMEOUT_MS."
  fail "$name" "$msg"
fi
# The host scrapes the metrics (crud_master_metrics_scrapers), and still reaches inventory-api only through the gateway.
check_reach host "$INVENTORY_VM_IP" "$INVENTORY_API_PORT" inventory-api no
for vm in "${billing_vms[@]}"; do
  ip=${vm_ip[$vm]}
  reply=$(in_sandbox curl -sS -m 5 "http://$ip:$RABBITMQ_PROMETHEUS_PORT/metrics" 2>&1)
  if grep -q '^rabbitmq_queue_messages_ready ' <<<"$reply"; then
    pass "the host scrapes $vm's RabbitMQ metrics ($ip:$RABBITMQ_PROMETHEUS_PORT/metrics)"
  else
    msg="GET /metrics: $(head -c 300 <<<"$reply"). rabbitmq_prometheus must listen on the VM's private IP"
    msg+=" (roles/rabbitmq) and its firewall let the scrapers in (crud_master_metrics_scrapers)."
    fail "the host scrapes $vm's RabbitMQ metrics ($ip:$RABBITMQ_PROMETHEUS_PORT/metrics)" "$msg"
  fi
done
reply=$(in_sandbox curl -sS -m 5 -o /dev/null -w '%{http_code}' -u "$RABBITMQ_USER:$RABBITMQ_PASSWORD" \
  "http://127.0.0.1:$RABBITMQ_UI_PORT/api/whoami" 2>&1)
if [ "$reply" = 200 ]; then
  pass "the host reaches the RabbitMQ management UI through the forwarded port :$RABBITMQ_UI_PORT"
else
  msg="GET /api/whoami as $RABBITMQ_USER: $reply. The firewall of billing-vm must let the host in"
  msg+=" (crud_master_host_addresses)."
  fail "the host reaches the RabbitMQ management UI through the forwarded port :$RABBITMQ_UI_PORT" "$msg"
fi

# ---------------------------------------------------------------------------------------------------------------
step "secrets: each machine holds only its own"
# Files of VM holding any of the values on stdin (grep reads them from stdin: they never reach a command line).
files_with() {
  on_vm "$1" grep -rlsF -f /dev/stdin --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev --exclude-dir=run / 2>&1
}
for vm in "${machines[@]}"; do
  own=" ${vm_secrets[$vm]} "
  mine=() others=() names=()
  for name in $(compgen -v | grep -E '_(PASSWORD|COOKIE)$'); do
    if [[ $own == *" $name "* ]]; then mine+=("${!name}"); else others+=("${!name}"); names+=("$name"); fi
  done
  found_own=$(printf '%s\n' "${mine[@]}" | files_with "$vm")
  found=$(printf '%s\n' "${others[@]}" | files_with "$vm")
  if [ -z "$found_own" ] && [ "$own" != "  " ]; then
    msg="the control failed: no file on $vm holds its own secrets ($own): the search finds nothing"
    fail "$vm holds only its own secrets" "$msg"
  elif [ -n "$found" ]; then
    msg="files on $vm hold a secret of another machine (one of ${names[*]}): $(head -5 <<<"$found" | tr '\n' ' ')"
    fail "$vm holds only its own secrets" "$msg"
  else
    pass "$vm holds only its own secrets (${own# }found in $(grep -c . <<<"$found_own") files; none of ${names[*]})"
  fi
done

# ---------------------------------------------------------------------------------------------------------------
step "the service user: crud-master runs PM2 and the apps, and has no sudo"
for vm in "${machines[@]}"; do
  # every PM2 daemon and app process, the user of the PM2 unit, and what sudo allows crud-master
  seen=$(on_vm "$vm" sh -c 'daemon=$(cat /var/lib/crud-master/.pm2/pm2.pid) &&
    ps -o user:20= -p "$daemon" --ppid "$daemon";
    echo "unit: $(systemctl show -p User --value pm2-crud-master)"; sudo -l -U crud-master 2>&1 | tail -1' 2>&1)
  users=$(grep -v -e '^unit:' -e 'sudo' <<<"$seen" | sort -u | tr '\n' ' ')
  if [ "$users" = "crud-master " ] && grep -qx 'unit: crud-master' <<<"$seen" \
    && grep -q 'not allowed to run sudo' <<<"$seen"; then
    pass "$vm: PM2 and its apps run as crud-master (its systemd unit too), which may not run sudo"
  else
    fail "$vm: PM2 and its apps run as crud-master, which may not run sudo" \
      "users of PM2 and the apps: $users; $(grep -e '^unit:' -e sudo <<<"$seen" | tr '\n' ' ')"
  fi
done
