"""Filters of ansible/group_vars/all/: the port arithmetic of the metrics listeners, in one place that
tests/component/vm-topology.test.ts checks. Ansible loads them from beside the playbook."""

from ansible.errors import AnsibleFilterError


def port_range(first, count):
    """COUNT ports from FIRST in nftables' notation: '9100-9109' (first 9100, count 10), '9100' (count 1)."""
    first, count = int(first), int(count)
    if count < 1:
        raise AnsibleFilterError(f"crud_master_port_range: count must be 1 or more, not {count}")
    return str(first) if count == 1 else f"{first}-{first + count - 1}"


def endpoints(hosts, first_port, count=1):
    """HOST:PORT for each of HOSTS and each of COUNT ports from FIRST_PORT, host by host: Prometheus' targets."""
    return [f"{host}:{int(first_port) + offset}" for host in hosts for offset in range(int(count))]


class FilterModule:
    def filters(self):
        return {"crud_master_port_range": port_range, "crud_master_endpoints": endpoints}
