#!/usr/bin/env bash
# A network sandbox for the docker provider: a network namespace with NAT out (slirp4netns: the guests reach the
# Debian archive and the npm registry, nothing on this machine's own networks) and a Docker engine of its own inside
# it, so that the guests' networks, their forwarded ports and every test packet stay in the namespace, and this
# machine's iptables, Docker (if any) and single-host stack on :8080 stay untouched.
#
#   sandbox.sh up              create the namespace, start slirp4netns and dockerd (idempotent)
#   sandbox.sh exec CMD…       run CMD in the namespace, with DOCKER_HOST set to the sandbox's engine
#   sandbox.sh down            stop dockerd and slirp4netns, delete the namespace (containers die with the engine;
#                              images stay in the data root, the box cache)
# Settings: SANDBOX_NAME (crud-master-vagrant), SANDBOX_DATA_ROOT (/var/lib/crud-master-docker).
set -euo pipefail
name=${SANDBOX_NAME:-crud-master-vagrant}
data_root=${SANDBOX_DATA_ROOT:-/var/lib/crud-master-docker}
run_dir=/run/$name
netns_path=/run/netns/$name
export DOCKER_HOST=unix://$run_dir/docker.sock

die() { echo "sandbox: $*" >&2; exit 1; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

up() {
  [ "$(id -u)" -eq 0 ] || die "run as root (namespaces and dockerd need it)"
  for command in ip nsenter slirp4netns dockerd docker; do
    command -v "$command" >/dev/null && continue
    die "$command is missing (make vagrant-test installs docker.io, slirp4netns; ip: iproute2; nsenter: util-linux)"
  done
  mkdir -p "$run_dir"
  [ -e "$netns_path" ] || ip netns add "$name"
  ip -n "$name" link set lo up
  if ! alive "$run_dir/slirp4netns.pid"; then
    # 10.0.2.0/24 with the gateway at .2 and DNS at .3; --disable-host-loopback keeps this machine's
    # 127.0.0.1 (the single-host stack) out of reach.
    slirp4netns --configure --mtu=65520 --disable-host-loopback --netns-type=path "$netns_path" tap0 \
      > "$run_dir/slirp4netns.log" 2>&1 &
    echo $! > "$run_dir/slirp4netns.pid"
    for _ in $(seq 50); do
      ip -n "$name" addr show tap0 2>/dev/null | grep 'inet ' >/dev/null && break
      sleep 0.1
    done
    ip -n "$name" addr show tap0 | grep 'inet ' >/dev/null \
      || die "slirp4netns did not configure tap0 ($run_dir/slirp4netns.log)"
  fi
  if ! alive "$run_dir/dockerd.pid"; then
    mkdir -p "$data_root"
    # The guests resolve names through slirp4netns's DNS.
    printf 'nameserver 10.0.2.3\n' > "$run_dir/resolv.conf"
    nsenter --net="$netns_path" -- dockerd --data-root "$data_root" --exec-root "$run_dir/exec" \
      --pidfile "$run_dir/dockerd.pid" --host "$DOCKER_HOST" --dns 10.0.2.3 \
      > "$run_dir/dockerd.log" 2>&1 &
    for _ in $(seq 100); do docker info >/dev/null 2>&1 && break; sleep 0.3; done
    docker info >/dev/null 2>&1 || die "dockerd did not start ($run_dir/dockerd.log)"
  fi
  fence
}

# NAT out reaches the public registries only: a packet to a private address that is not in the namespace (a
# guest's network that is gone, a wrong IP) is rejected, from the namespace itself and from the guests alike
# (DOCKER-USER is Docker's chain for such rules). Exempt: slirp4netns's own network and this machine's resolvers.
fence() {
  local chain range resolver
  for chain in OUTPUT DOCKER-USER; do
    for range in 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16; do
      in_netns iptables -C "$chain" -o tap0 -d "$range" -j REJECT 2>/dev/null \
        || in_netns iptables -I "$chain" -o tap0 -d "$range" -j REJECT
    done
    for resolver in 10.0.2.0/24 $(awk '/^nameserver/ { print $2 }' /etc/resolv.conf | grep -E '^[0-9.]+$'); do
      in_netns iptables -C "$chain" -o tap0 -d "$resolver" -j RETURN 2>/dev/null \
        || in_netns iptables -I "$chain" -o tap0 -d "$resolver" -j RETURN
    done
  done
}

in_netns() { nsenter --net="$netns_path" -- "$@"; }

down() {
  if alive "$run_dir/dockerd.pid"; then
    kill "$(cat "$run_dir/dockerd.pid")"
    for _ in $(seq 100); do alive "$run_dir/dockerd.pid" || break; sleep 0.3; done
    alive "$run_dir/dockerd.pid" && kill -9 "$(cat "$run_dir/dockerd.pid")"
  fi
  alive "$run_dir/slirp4netns.pid" && kill "$(cat "$run_dir/slirp4netns.pid")"
  [ -e "$netns_path" ] && ip netns delete "$name"
  rm -rf "$run_dir"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  exec) shift; [ -e "$netns_path" ] || die "no sandbox: run '$0 up' first"; exec nsenter --net="$netns_path" -- "$@" ;;
  *) echo "usage: $0 up | exec COMMAND… | down" >&2; exit 2 ;;
esac
