# Sourced by vagrant-stage.sh (one billing VM): billing-vm's disk is lost, and its data comes back. `make backup`, then
# `vagrant destroy -f billing-vm` and `make up` (a freshly provisioned billing-vm, billing_db empty), then
# `make restore`: billing_db's orders are those of the backup row for row, and an order posted after it is stored once.

[ "$scale" = 0 ] || return 0
step "restore onto a fresh billing-vm: make backup, vagrant destroy -f billing-vm, make up, make restore"
t0=$(date +%s)
orders_query='SELECT id, user_id, number_of_items, total_amount, message_id, created_at FROM orders ORDER BY id'
orders() { on_vm billing-vm runuser -u postgres -- psql -d "$BILLING_DB_NAME" -tAc "$1" 2>&1; }
at_backup=$(orders "$orders_query")
on_checkout() { on_host sh -c "cd '$checkout' && $1" >> "$logs/restore.log" 2>&1; }
if on_checkout 'make backup' \
  && folder=$(sed -n 's/^Bring it back with: make restore BACKUP=//p' "$logs/restore.log") \
  && on_checkout 'vagrant destroy -f billing-vm && make up PROVIDER=docker' \
  && in_sandbox sh -c "cd '$checkout' && vagrant ssh-config" > "$tmp/ssh_config" 2>> "$logs/restore.log"; then
  fresh=$(orders 'SELECT count(*) FROM orders')
  on_checkout "make restore BACKUP=$folder"
  restored=$(orders "$orders_query")
  key=$(date +%s%N)
  reply=$(in_sandbox curl -sS -m 10 -o /dev/null -w '%{http_code}' -H "Idempotency-Key: restore-$key" \
    -H 'Content-Type: application/json' -d '{"user_id":"usr_restore","number_of_items":1,"total_amount":"2.50"}' \
    "http://127.0.0.1:$GATEWAY_PORT/api/billing" 2>&1)
  for _ in $(seq 30); do
    stored=$(orders "SELECT count(*) FROM orders WHERE message_id = 'restore-$key'")
    [ "$stored" = 1 ] && break
    sleep 1
  done
  lines=$(grep -c . <<<"$at_backup")
  if [ "$fresh" = 0 ] && [ "$lines" -gt 0 ] && [ "$restored" == "$at_backup" ] \
    && [ "$reply" = 202 ] && [ "$stored" = 1 ]; then
    msg="billing-vm's disk lost: the fresh billing-vm got the backup's $lines orders row for row, and stores new ones"
    msg+=" ($(( $(date +%s) - t0 ))s)"
    pass "$msg"
  else
    msg="at backup: $lines orders; the fresh billing_db: $fresh; restored equal: "
    msg+=$([ "$restored" == "$at_backup" ] && echo yes || echo "no ($(grep -c . <<<"$restored") rows)")
    msg+="; a new order: $reply, stored $stored (log: $logs/restore.log)"
    fail "billing-vm's disk lost: make restore brings its orders back" "$msg"
  fi
else
  fail "billing-vm's disk lost: make restore brings its orders back" \
    "$(tail -5 "$logs/restore.log") (log: $logs/restore.log)"
fi
