#!/bin/sh
# make backup / make restore: the deployment's data on this host, and back. On the VMs when `make up` made them
# (.vagrant/ssh_config), else on this host after `make local`. Each host's part is ops/host-backup.sh from its
# release, run as root (over `vagrant ssh`'s own channel on the VMs): a tar of its parts goes to or from this host.
#   ops/backup.sh save              backups/<UTC date and time>/: movies_db.dump, billing_db.dump (pg_dump -Fc), and
#                                   rabbitmq-definitions.json (its users' password hashes too: the folder is 0700)
#   ops/backup.sh restore FOLDER    each host restores the parts it holds from FOLDER
set -eu
cd "$(dirname "$0")/.."
# shellcheck source=ops/deployment.sh
. ops/deployment.sh
host_backup=$release/ops/host-backup.sh
vms=$(deployed_vms || true)
if [ -z "$vms" ] && [ ! -f "$host_backup" ]; then
  echo "Nothing deployed: make up (the VMs) or make local (this host) first." >&2
  exit 1
fi
hosts=${vms:-localhost}

# on_host VM|localhost ARGUMENT: host-backup.sh ARGUMENT there, as root.
on_host() {
  if [ "$1" = localhost ]; then as_root sh "$host_backup" "$2"; else on_vm "$1" sudo -n sh "$host_backup" "$2"; fi
}

case ${1:-} in
  save)
    umask 077
    folder=backups/$(date -u +%Y-%m-%dT%H%M%SZ)
    mkdir -p "$folder"
    # Each host's tar is whole before it is read: sh has no pipefail to tell a failed export.
    for host in $hosts; do
      on_host "$host" export < /dev/null > "$folder/.$host.tar"
      tar -x -C "$folder" -f "$folder/.$host.tar"
      rm "$folder/.$host.tar"
    done
    [ -n "$(ls "$folder")" ] \
      || { echo "No host holds a database: nothing was backed up." >&2; rmdir "$folder"; exit 1; }
    echo "Backed up into $folder:"
    ls -l "$folder"
    echo "Bring it back with: make restore BACKUP=$folder"
    ;;
  restore)
    folder=${2:-}
    if [ -z "$folder" ] || [ ! -d "$folder" ]; then
      echo "Name a backup's folder: make restore BACKUP=backups/<date>" >&2
      exit 2
    fi
    for host in $hosts; do
      COPYFILE_DISABLE=1 tar -c -C "$folder" . | on_host "$host" import
    done
    echo "Restored from $folder."
    ;;
  *)
    echo "usage: $0 save | restore FOLDER" >&2
    exit 2
    ;;
esac
