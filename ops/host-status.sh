#!/bin/sh
# One host's part of `make status` (ops/status.sh runs it, as root, from the release on each VM, or on this host after
# `make local`): its PM2 apps, each app's /readyz, billing_queue and its dead letters where RabbitMQ runs, and the rows
# of each database PostgreSQL holds here. It reads what the roles wrote: the apps' env files and where each answers
# /readyz. A part that cannot tell says why in its line.
set -u
env_dir=${CRUD_MASTER_ENV_DIR:-/etc/crud-master}
state_dir=${CRUD_MASTER_STATE_DIR:-/var/lib/crud-master-deploy}

echo "== $(hostname)"

# PM2: one line per app (its instances together).
# shellcheck disable=SC2016 # JavaScript's template literals
pm2 jlist 2>/dev/null | node -e '
  let text = "";
  process.stdin.on("data", (chunk) => (text += chunk)).on("end", () => {
    let list;
    try { list = JSON.parse(text); } catch { return console.log("  pm2: no answer from the daemon"); }
    const apps = new Map();
    for (const p of list) apps.set(p.name, [...(apps.get(p.name) ?? []), p]);
    if (apps.size === 0) console.log("  pm2: no app");
    const since = (ms) => {
      const m = Math.floor((Date.now() - ms) / 60000);
      return m < 60 ? `${m}m` : `${Math.floor(m / 60)}h${m % 60}m`;
    };
    for (const [name, procs] of apps) {
      const online = procs.filter((p) => p.pm2_env.status === "online");
      const states = [...new Set(procs.map((p) => p.pm2_env.status))].join(",");
      const restarts = procs.reduce((sum, p) => sum + p.pm2_env.restart_time, 0);
      const memory = procs.reduce((sum, p) => sum + (p.monit?.memory ?? 0), 0) / 2 ** 20;
      const up = online.length ? `up ${since(Math.min(...online.map((p) => p.pm2_env.pm_uptime)))}` : "";
      const count = `${online.length}/${procs.length}`;
      console.log(`  ${name.padEnd(17)} ${states.padEnd(8)} ${count}  ${up.padEnd(10)} ` +
        `restarts ${String(restarts).padEnd(4)} ${Math.round(memory)} MB`);
    }
  });'

# /readyz of each app of this host, where the deploy checked it (node: the docker provider's box has no curl).
for file in "$state_dir"/*.readyz; do
  [ -e "$file" ] || continue
  # shellcheck disable=SC2016 # JavaScript's template literals
  node -e '
    const [app, url] = process.argv.slice(1);
    const line = (said) => console.log(`  ${app.padEnd(17)} /readyz ${said}`);
    fetch(url, { signal: AbortSignal.timeout(3000) })
      .then(async (reply) => {
        const text = await reply.text();
        let body = {};
        try { body = JSON.parse(text); } catch {}
        // its status, and the problem detail when it is not ready
        line(`${reply.status} ${body.detail ?? body.status ?? text.slice(0, 80)}`);
      })
      .catch((err) => line(`no answer (${err.cause?.code ?? err.cause?.message ?? err.name})`));
  ' "$(basename "$file" .readyz)" "$(cat "$file")"
done

# billing_queue and its dead-letter queue, on a host of RabbitMQ.
if command -v rabbitmqctl >/dev/null 2>&1; then
  vhost=$(sed -n 's/^RABBITMQ_VHOST=//p' "$env_dir"/*.env 2>/dev/null | head -1)
  queue=$(sed -n 's/^RABBITMQ_QUEUE=//p' "$env_dir"/*.env 2>/dev/null | head -1)
  # the queue and those named after it (its dead-letter queue)
  if queues=$(rabbitmqctl -q list_queues -p "${vhost:-/}" \
    name messages_ready messages_unacknowledged consumers 2>&1); then
    printf '%s\n' "$queues" | awk -v queue="${queue:-billing_queue}" '
      NF == 4 && ($1 == queue || index($1, queue ".") == 1) {
        printf "  %-28s ready %-7s unacked %-7s consumers %s\n", $1, $2, $3, $4 }' | sort
  else
    echo "  RabbitMQ: $(printf '%s\n' "$queues" | sed -n '/./{p;q;}' | cut -c1-100)"
  fi
fi

# The rows of each table of the apps' databases that PostgreSQL holds here (skipped where it holds none of them).
sed -n 's/^[A-Z_]*_DB_NAME=//p' "$env_dir"/*.env 2>/dev/null | sort -u | while IFS= read -r db; do
  rows=$(cd / && runuser -u postgres -- psql -XqAt -d "$db" -c "
    SELECT string_agg(format('%s %s', table_name,
             (xpath('/row/c/text()',
                    query_to_xml(format('SELECT count(*) AS c FROM %I', table_name), false, true, '')))[1]), ', '
           ORDER BY table_name)
    FROM information_schema.tables
    WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> 'pgmigrations'" 2>/dev/null) \
    && echo "  $db: $rows"
done

# The alerts that fire, where the monitor runs (amtool reads Alertmanager's address from /etc/amtool/config.yml).
if [ -r /etc/amtool/config.yml ]; then
  if alerts=$(amtool alert query -o simple 2>&1); then
    alerts=$(printf '%s\n' "$alerts" | sed '1d; /^[[:space:]]*$/d')
    if [ -z "$alerts" ]; then
      echo "  alerts: none firing"
    else
      echo "  alerts firing ($(printf '%s\n' "$alerts" | wc -l); \`amtool alert\` for more):"
      printf '%s\n' "$alerts" | head -n 5 | cut -c1-116 | sed 's/^/    /; s/[[:space:]]*$//'
    fi
  else
    echo "  alerts: Alertmanager does not answer ($(printf '%s\n' "$alerts" | sed -n '/./{p;q;}' | cut -c1-80))"
  fi
fi
