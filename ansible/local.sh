#!/usr/bin/env bash
# Provisions THIS host: ansible/site.yml with ansible/local.ini (this host plays every group), then how long it took.
# `make local` runs it, and so do the tests that provision this host (tests/run-all.sh, tests/privileges).
#
#   ansible/local.sh [ansible-playbook arguments…]      e.g. --tags deploy -v, or -K for a sudo password
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export ANSIBLE_CONFIG=${ANSIBLE_CONFIG:-$here/ansible.cfg}
started=$(date +%s)
ansible-playbook -i "$here/local.ini" "$here/site.yml" "$@"
echo "ansible/local.sh: provisioning took $(( $(date +%s) - started ))s"
