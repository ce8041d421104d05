#!/bin/sh
# One host's part of the backups, run as root from the release (the backup role wrote what this host holds in
# /etc/crud-master-backup.conf; a host without that file holds nothing to back up):
#   export   a tar on stdout: <database>.dump (pg_dump -Fc) of each database here, rabbitmq-definitions.json on the
#            host that keeps them                                             (make backup, through ops/backup.sh)
#   import   restores each part this host holds from such a tar on stdin   (make restore)
#   daily    the same parts into a dated folder of $backup_dir, and drops those older than $keep_days
#            (the backup role's timer or cron job)
# A database comes back through the release's SQL for it (services/*/restore.sql), in one transaction with the backup's
# rows loaded beside the live ones (schema `backup`): inventory's replaces the movies, billing's adds the orders that
# billing_db lacks and keeps those stored since. RabbitMQ's messages are never touched.
set -eu
conf=${CRUD_MASTER_BACKUP_CONF:-/etc/crud-master-backup.conf}
release=$(cd "$(dirname "$0")/.." && pwd)
databases=''
rabbitmq_definitions=false
backup_dir=/var/backups/crud-master
keep_days=14
if [ -f "$conf" ]; then
  # shellcheck source=/dev/null
  . "$conf"
fi
# The scratch database that a dump is restored into before its rows go over to the live one.
scratch=crud_master_restore
umask 077

# (no NOTICE of dropdb --if-exists)
as_postgres() {
  (cd / && PGOPTIONS='-c client_min_messages=warning' runuser -u postgres -- "$@")
}

say() {
  echo "$(hostname): $*" >&2
}

# dump DIR: each part this host holds, into DIR.
dump() {
  for entry in $databases; do
    name=${entry%%=*}
    as_postgres pg_dump --format=custom "$name" > "$1/$name.dump"
    say "$name: $(wc -c < "$1/$name.dump") bytes"
  done
  if [ "$rabbitmq_definitions" = true ]; then
    # through stdout: rabbitmqctl runs as the rabbitmq user, who may not write here
    rabbitmqctl --quiet export_definitions - > "$1/rabbitmq-definitions.json"
    say "RabbitMQ definitions: $(wc -c < "$1/rabbitmq-definitions.json") bytes"
  fi
}

# restore_database NAME SQL DUMP: the rows of DUMP come back into NAME through the release's SQL.
restore_database() {
  as_postgres dropdb --if-exists "$scratch"
  as_postgres createdb "$scratch"
  scratch_made=1
  as_postgres pg_restore --no-owner --no-privileges --exit-on-error --dbname="$scratch" < "$3"
  as_postgres psql -X -q -v ON_ERROR_STOP=1 -d "$scratch" -c 'ALTER SCHEMA public RENAME TO backup'
  {
    as_postgres pg_dump --no-owner --no-privileges --schema=backup "$scratch"
    cat <<'SQL'
DO $$ BEGIN
  IF (SELECT array_agg(name ORDER BY name) FROM backup.pgmigrations)
     IS DISTINCT FROM (SELECT array_agg(name ORDER BY name) FROM public.pgmigrations) THEN
    RAISE EXCEPTION 'the backup was taken under other migrations than this release has: restore it with its own';
  END IF;
END $$;
SQL
    cat "$release/$2"
    echo 'DROP SCHEMA backup CASCADE;'
  } | as_postgres psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d "$1" -f - >/dev/null
  as_postgres dropdb "$scratch"
  scratch_made=''
  say "$1: restored ($2)"
}

# restore DIR: each part this host holds, from DIR; a part missing there is an error.
restore() {
  for entry in $databases; do
    name=${entry%%=*}
    [ -s "$1/$name.dump" ] || { say "the backup has no $name.dump"; exit 1; }
    restore_database "$name" "${entry#*=}" "$1/$name.dump"
  done
  if [ "$rabbitmq_definitions" = true ]; then
    definitions=$1/rabbitmq-definitions.json
    [ -s "$definitions" ] || { say "the backup has no rabbitmq-definitions.json"; exit 1; }
    # The users that exist keep their passwords: .env holds them, and the provisioning set them.
    rabbitmqctl --quiet list_users --formatter json | node -e '
      const fs = require("node:fs");
      const live = new Set(JSON.parse(fs.readFileSync(0, "utf8")).map((user) => user.user));
      const definitions = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
      definitions.users = (definitions.users ?? []).filter((user) => !live.has(user.name));
      fs.writeFileSync(process.argv[1], JSON.stringify(definitions));
    ' "$definitions"
    rabbitmqctl --quiet import_definitions < "$definitions" >/dev/null
    say "RabbitMQ definitions: imported (the existing users kept their passwords)"
  fi
}

# A restore that fails leaves no copy of the backup's rows behind.
scratch_made=''
cleanup() {
  rm -rf "$work"
  [ -z "$scratch_made" ] || as_postgres dropdb --if-exists "$scratch"
}
work=$(mktemp -d)
trap cleanup EXIT
case ${1:-} in
  export)
    dump "$work"
    tar -c -C "$work" .
    ;;
  import)
    tar -x -C "$work"
    restore "$work"
    ;;
  daily)
    [ -n "$databases" ] || [ "$rabbitmq_definitions" = true ] || exit 0
    folder=$backup_dir/$(date -u +%Y-%m-%dT%H%M%SZ)
    mkdir -p "$folder"
    dump "$folder"
    find "$backup_dir" -mindepth 1 -maxdepth 1 -type d -mtime +"$keep_days" -exec rm -rf {} +
    ;;
  *)
    echo "usage: $0 export|import|daily" >&2
    exit 2
    ;;
esac
