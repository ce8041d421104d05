# Sourced by vagrant-stage.sh: the suites against the guests, from the checkout's own client. The end-to-end suite
# and the seed's scenario run with one billing VM only; the Postman collection and scale.test.ts always.

for _ in $(seq 600); do [ -s "$tmp/client.status" ] && break; sleep 1; done
client_status=$(cat "$tmp/client.status" 2> /dev/null) || client_status="not done after 10 more minutes"
[ "$client_status" = 0 ] \
  || abort "client" "npm ci or tsc -b of the test client failed (exit code $client_status; log: $logs/npm-client.log)"
# A mocha suite from the client, in the sandbox; it counts its own tests from the JSON of tests/stats-reporter.ts
# (a run that dies before its end: one failure more), and names each failure.
suite() { # NAME SECONDS [VAR=VALUE…] -- MOCHA_ARGUMENTS…
  local name=$1 seconds=$2 vars=() code what
  shift 2
  while [ "$1" != -- ]; do vars+=("$1"); shift; done
  shift
  (cd "$checkout" && in_sandbox env "${vars[@]}" timeout --kill-after=10 "$seconds" npx mocha --exit \
    --reporter tests/stats-reporter.ts --reporter-option "stats=$logs/$name.json" "$@") > "$logs/$name.log" 2>&1
  code=$?
  sed 's/^/  | /' "$logs/$name.log" | grep -Ev '^\s*\|\s*$' | head -120
  add_counts mocha "$logs/$name.json" "$code"
  for what in "${run_failures[@]}"; do
    failures+=("$name: $what (log: $logs/$name.log)")
    echo "  FAIL  $name: $what"
  done
}

if [ "$scale" = 0 ]; then
  step "end-to-end suite against gateway-vm's :$GATEWAY_PORT (forwarded), pm2 and psql over SSH"
  # The firewalls let only gateway-vm reach inventory-api and AMQP, and billing-consumer's health port is on loopback:
  # the suite reaches them through SSH tunnels from the sandbox, as an operator would. The metrics it scrapes directly,
  # on the private IPs: the firewalls let the host in (crud_master_metrics_scrapers).
  tunnel_inventory=18081 tunnel_billing_health=18082 tunnel_amqp=15673
  open_tunnel() { # VM -L SPEC…
    local vm=$1; shift
    in_sandbox ssh -F "$tmp/ssh_config" -q -N -o ExitOnForwardFailure=yes "$@" "$vm" \
      > /dev/null 2>> "$logs/tunnels.log" &
    tunnels+=($!)
  }
  open_tunnel gateway-vm -L "127.0.0.1:$tunnel_inventory:$INVENTORY_VM_IP:$INVENTORY_API_PORT" \
    -L "127.0.0.1:$tunnel_amqp:$BILLING_VM_IP:$RABBITMQ_PORT"
  open_tunnel billing-vm -L "127.0.0.1:$tunnel_billing_health:127.0.0.1:$BILLING_HEALTH_PORT"
  for port in $tunnel_inventory $tunnel_amqp $tunnel_billing_health; do
    for _ in $(seq 50); do in_sandbox bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null && break; sleep 0.2; done
  done
  suite e2e 900 \
    E2E_GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT" \
    E2E_INVENTORY_URL="http://127.0.0.1:$tunnel_inventory" \
    E2E_BILLING_HEALTH_URL="http://127.0.0.1:$tunnel_billing_health" \
    E2E_RABBITMQ_HOST=127.0.0.1 E2E_RABBITMQ_PORT="$tunnel_amqp" \
    E2E_RABBITMQ_API_URL="http://127.0.0.1:$RABBITMQ_UI_PORT/api" \
    E2E_PROMETHEUS_URL="http://127.0.0.1:$PROMETHEUS_PORT" E2E_ALERTMANAGER_URL="http://127.0.0.1:$ALERTMANAGER_PORT" \
    E2E_GATEWAY_METRICS_HOST="$GATEWAY_VM_IP" E2E_INVENTORY_METRICS_HOST="$INVENTORY_VM_IP" \
    E2E_BILLING_METRICS_HOST="$BILLING_VM_IP" \
    E2E_RABBITMQ_METRICS_URL="http://$BILLING_VM_IP:$RABBITMQ_PROMETHEUS_PORT" \
    E2E_GATEWAY_EXEC="$tmp/on-vm gateway-vm" \
    E2E_INVENTORY_EXEC="$tmp/on-vm inventory-vm" \
    E2E_BILLING_EXEC="$tmp/on-vm billing-vm" \
    -- 'tests/e2e/**/*.test.ts'
  close_tunnels
fi

step "Postman collection against gateway-vm's :$GATEWAY_PORT"
(cd "$checkout" && in_sandbox npx newman run postman/crud-master.postman_collection.json \
  --env-var "baseUrl=http://127.0.0.1:$GATEWAY_PORT" --reporters cli,json --reporter-json-export "$logs/postman.json") \
  > "$logs/postman.log" 2>&1
counts=$(report_counts newman "$logs/postman.json") || counts="0 1"
if [ "${counts#* }" = 0 ]; then
  pass "Postman collection: ${counts% *} assertions passed"
else
  fail "Postman collection: ${counts#* } of $(( ${counts% *} + ${counts#* } )) assertions failed" \
    "$(grep -E '^ *[0-9]+\. ' "$logs/postman.log" | head -5) (log: $logs/postman.log)"
fi

if [ "$scale" = 0 ]; then
  step "the seed's scenario over vagrant ssh, and a reboot of every machine"
  suite vm-path 1200 VAGRANT_CWD="$checkout" \
    E2E_GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT" E2E_RABBITMQ_API_URL="http://127.0.0.1:$RABBITMQ_UI_PORT/api" \
    -- tests/vagrant/vm-path.test.ts
fi
if [ "$scale" = 1 ]; then
  msg="the RabbitMQ cluster of the ${#billing_vms[@]} billing VMs, and orders while a broker stops and a billing VM"
  msg+=" halts"
  step "$msg"
else
  msg="orders while billing-vm's broker stops and restarts, then billing-vm halts and comes back (the figures to"
  msg+=" compare with make scale-test)"
  step "$msg"
fi
suite scale 2400 VAGRANT_CWD="$checkout" SCALE_ON_VM="$tmp/on-vm" \
  E2E_GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT" E2E_RABBITMQ_API_URL="http://127.0.0.1:$RABBITMQ_UI_PORT/api" \
  -- tests/vagrant/scale.test.ts
# The guests' SSH addresses may change with a reboot or a halt.
in_sandbox sh -c "cd '$checkout' && vagrant ssh-config" > "$tmp/ssh_config" 2>> "$logs/ssh-config.log"
