#!/bin/sh
# The Ansible collections of ansible/requirements.yml against those this host's Ansible finds.
#
#   ansible/collections.sh check [REQUIREMENTS]    print each collection that is missing or too old; exit 1 if any
#   ansible/collections.sh install [REQUIREMENTS]  install from REQUIREMENTS with ansible-galaxy, only if one is
#
# REQUIREMENTS defaults to requirements.yml beside this script. A host whose Ansible has them all (Debian 12's
# `ansible` package) never contacts Ansible Galaxy. `make deps-ansible` runs `install`, and so does the Vagrantfile
# on each machine before the playbook (as the user that runs it: ansible-galaxy installs into its
# ~/.ansible/collections, which Ansible searches first).
set -eu

action=${1:-}
requirements=${2:-$(cd "$(dirname "$0")" && pwd)/requirements.yml}

# Prints "name: wanted (found)" for each requirement that the collection Ansible would load does not meet.
# Ansible loads a collection from the first path that has it: `collection list` prints the paths in that order.
check() {
  installed=$(ansible-galaxy collection list --format json 2>/dev/null) || {
    echo "ansible-galaxy collection list failed: is Ansible (2.10 or later) installed?" >&2
    return 2
  }
  # The interpreter of ansible-galaxy: it has PyYAML, which Ansible needs.
  python=$(sed -n '1s/^#![[:space:]]*//p' "$(command -v ansible-galaxy)")
  # shellcheck disable=SC2086 # the shebang may be "/usr/bin/env python3"
  ${python:-python3} - "$requirements" "$installed" <<'PY'
import json, re, sys, yaml

def parse(version):
    return tuple(int(part) for part in re.findall(r'\d+', version.split('-')[0].split('+')[0])[:3])

def meets(version, spec):
    """version meets spec: comma-separated conditions such as ">=1.2.0,<2" ("*" or nothing: any)."""
    have = parse(version)
    tests = {'>=': lambda a, b: a >= b, '<=': lambda a, b: a <= b, '!=': lambda a, b: a != b,
             '==': lambda a, b: a == b, '>': lambda a, b: a > b, '<': lambda a, b: a < b}
    for condition in filter(None, (c.strip() for c in str(spec or '*').split(','))):
        if condition == '*':
            continue
        op = next((op for op in tests if condition.startswith(op)), '==')
        want = parse(condition[len(op):] if condition.startswith(op) else condition)
        if not tests[op](have + (0,) * (3 - len(have)), want + (0,) * (3 - len(want))):
            return False
    return True

with open(sys.argv[1]) as file:
    wanted = yaml.safe_load(file).get('collections') or []
found = {}
for collections in json.loads(sys.argv[2] or '{}').values():
    for name, info in collections.items():
        found.setdefault(name, info.get('version') or '*')
lacking = 0
for entry in wanted:
    name, spec = (entry, '*') if isinstance(entry, str) else (entry['name'], entry.get('version', '*'))
    if name not in found:
        print(f'{name}: {spec} (missing)')
    elif found[name] != '*' and not meets(found[name], spec):
        print(f'{name}: {spec} (found {found[name]})')
    else:
        continue
    lacking += 1
sys.exit(1 if lacking else 0)
PY
}

case $action in
  check)
    check
    ;;
  install)
    lacking=$(check) && exit 0
    [ -n "$lacking" ] || exit 1
    echo "Ansible lacks these collections:"
    printf '%s\n' "$lacking" | sed 's/^/  /'
    echo "Installing them from Ansible Galaxy: ansible-galaxy collection install -r $requirements"
    ansible-galaxy collection install -r "$requirements"
    if ! lacking=$(check); then
      echo "Still lacking after ansible-galaxy (an older copy earlier in the collections path?):" >&2
      printf '%s\n' "$lacking" | sed 's/^/  /' >&2
      exit 1
    fi
    ;;
  *)
    echo "usage: $0 check|install [REQUIREMENTS]" >&2
    exit 2
    ;;
esac
