// PM2 apps of crud-master. Each VM starts its own with `pm2 startOrReload ecosystem.config.cjs --only <name>`;
// `make local` starts all three on one host. Each app reads its env file, written by the Ansible role crud_service.
const envDir = process.env.CRUD_MASTER_ENV_DIR || '/etc/crud-master';

// V8 would grow the young generation to 64 MB under load and the old one by generous steps, and keep the pages once
// the load is gone (RSS stays at its peak). Smaller limits keep each process near 110 MB after a load instead of over
// 200; 128 MB of old space is still far above what a service keeps. The gateway allocates the most per request (two
// HTTP exchanges): with 4 MB semi-spaces its scavenges cost it a third more CPU per request than V8's default, with
// 16 MB a few per cent, for about 25 MB more RSS after a load (`make bench`, issue 27's note).
const v8MemoryFlags = (semiSpaceMb) => [`--max-semi-space-size=${semiSpaceMb}`, '--max-old-space-size=128'];

const app = (name, service, scaling, semiSpaceMb = 4) => ({
  name,
  ...scaling,
  cwd: __dirname,
  script: `services/${service}/dist/main.js`,
  node_args: [`--env-file=${envDir}/${name}.env`, ...v8MemoryFlags(semiSpaceMb)],
  // PM2 would load @pm2/io (custom metrics, ~14 MB of RSS per process) and source-map-support (~7 MB) into every
  // app; the services use neither: `pm2 list`/`pm2 monit` still show CPU and memory, and stack traces name the
  // dist/*.js lines. Without them each service idles under 80 MB (`make bench`).
  pmx: false,
  source_map_support: false,
  // restart a crashing service with growing delays instead of a tight loop
  exp_backoff_restart_delay: 200,
  // SIGINT, then this long to close HTTP, AMQP and the pool before SIGKILL (the service's own limit is 10 s)
  kill_timeout: 12000,
  merge_logs: true,
  time: false,
});

// The HTTP services are stateless: cluster mode shares their port between instances, and `pm2 reload` replaces
// them one at a time, so a reload drops no request. The consumer runs one instance per billing host.
const http = { exec_mode: 'cluster', instances: 2 };
const single = { exec_mode: 'fork', instances: 1 };

module.exports = {
  apps: [
    app('api-gateway', 'gateway', http, 16),
    app('inventory-api', 'inventory', http),
    app('billing-consumer', 'billing', single),
  ],
};
