# Sourced by vagrant-stage.sh: `make provision` over SSH with .vagrant/inventory.json changes nothing on a provisioned
# machine, and trusts only the SSH host keys that `make up` pinned.

step "make provision-idempotent PROVIDER=docker: ansible-playbook over SSH, .vagrant/inventory.json"
t0=$(date +%s)
if on_host make -C "$checkout" --no-print-directory provision-idempotent PROVIDER=docker \
  > "$logs/provision.log" 2>&1; then
  pass "make provision reports changed=0 on every host ($(( $(date +%s) - t0 ))s)"
else
  fail "make provision reports changed=0 on every host" \
    "$(grep -E '^(FAIL|fatal|changed|failed)' "$logs/provision.log" | head -8 | cut -c1-300)
(log: $logs/provision.log)"
fi

# ---------------------------------------------------------------------------------------------------------------
step "make provision trusts only the SSH host keys that make up pinned"
pinned=$checkout/.vagrant/known_hosts
# A new SSH connection each time: a master connection that Ansible keeps for 60 s (ControlPersist, e.g. from make
# provision) was authenticated before, and a ping through it checks no host key.
ping_vm() {
  (cd "$checkout" && in_sandbox env ANSIBLE_CONFIG=ansible/ansible.cfg \
    ANSIBLE_SSH_ARGS='-o ControlMaster=no -o ControlPath=none' \
    ansible -i .vagrant/inventory.json --playbook-dir ansible "$1" -m ping -e vagrant_provider=docker 2>&1)
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
    fail "make provision checks the pinned host keys" \
      "the control failed: ansible -m ping billing-vm with the pinned keys: $(tail -3 <<<"$genuine")"
  elif [[ $impostor == *"Host key verification failed"* || $impostor == *"IDENTIFICATION HAS CHANGED"* ]]; then
    msg="make provision checks the pinned host keys: billing-vm with a wrong pinned key is refused"
    msg+=" (Host key verification failed)"
    pass "$msg"
  else
    msg="ansible -m ping billing-vm with a wrong key pinned for it did not fail on the host key:"
    msg+=" $(tail -3 <<<"$impostor")"
    fail "make provision checks the pinned host keys" "$msg"
  fi
fi
