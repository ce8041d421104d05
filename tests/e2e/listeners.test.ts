import '@crud-master/test-support/env';
import { hostsWithApps, onHost, type Host } from '@crud-master/test-support/hosts';
import { instancesOf } from '@crud-master/test-support/metrics';
import { pm2ProcessesOn } from '@crud-master/test-support/pm2';
import { expect } from 'chai';

/**
 * Each listener of the deployed stack binds the narrowest address that works, as `ss -ltn` on
 * its host shows it. On one host (make local) every internal listener is on loopback; on the VMs (the Vagrant stage)
 * inventory-api binds inventory-vm's private IP and AMQP billing-vm's (and loopback), for gateway-vm.
 */
const env = process.env;
const oneHost = hostsWithApps().length === 1;

/** Listening TCP addresses by port on a host, from `ss -ltnH` ("*" and "0.0.0.0" mean every interface). */
function listenersOn(host: Host): Map<number, string[]> {
  const byPort = new Map<number, string[]>();
  for (const line of onHost(host, 'ss', ['-ltnH']).split('\n').filter(Boolean)) {
    const local = line.trim().split(/\s+/)[3]!;
    const at = local.lastIndexOf(':');
    const address = local
      .slice(0, at)
      .replace(/^\[|\]$/g, '')
      .replace(/%.*$/, '');
    const port = Number(local.slice(at + 1));
    byPort.set(port, [...(byPort.get(port) ?? []), address]);
  }
  return byPort;
}

const isLoopback = (address: string) => /^(::ffff:)?127\./.test(address) || address === '::1';

interface Listener {
  name: string;
  host: Host;
  port: number;
  /** addresses besides loopback that it may bind */
  alsoOn: string[];
}

/** The metrics listener of each PM2 instance of an app: the app's metrics port + the instance number. */
const metricsListeners = (app: string, host: Host, port: number, vmIp: string): Listener[] =>
  Array.from({ length: instancesOf(app) }, (_, instance) => ({
    name: `${app}'s /metrics (instance ${instance})`,
    host,
    port: port + instance,
    alsoOn: oneHost ? [] : [vmIp],
  }));

const listeners: Listener[] = [
  {
    name: 'inventory-api',
    host: 'inventory',
    port: Number(oneHost ? env.LOCAL_INVENTORY_API_PORT : env.INVENTORY_API_PORT),
    alsoOn: oneHost ? [] : [env.INVENTORY_VM_IP!],
  },
  { name: "billing-consumer's /healthz", host: 'billing', port: Number(env.BILLING_HEALTH_PORT), alsoOn: [] },
  {
    name: 'RabbitMQ AMQP',
    host: 'billing',
    port: Number(env.RABBITMQ_PORT),
    alsoOn: oneHost ? [] : [env.BILLING_VM_IP!],
  },
  { name: 'epmd', host: 'billing', port: 4369, alsoOn: [] },
  { name: 'Erlang distribution', host: 'billing', port: 25672, alsoOn: [] },
  { name: 'PostgreSQL (movies_db)', host: 'inventory', port: 5432, alsoOn: [] },
  { name: 'PostgreSQL (billing_db)', host: 'billing', port: 5432, alsoOn: [] },
  // Prometheus' endpoints (one port per PM2 instance): on the VMs each binds its machine's private IP, where the
  // firewall lets the scrapers in
  ...metricsListeners('api-gateway', 'gateway', Number(env.GATEWAY_METRICS_PORT), env.GATEWAY_VM_IP!),
  ...metricsListeners('inventory-api', 'inventory', Number(env.INVENTORY_METRICS_PORT), env.INVENTORY_VM_IP!),
  ...metricsListeners('billing-consumer', 'billing', Number(env.BILLING_METRICS_PORT), env.BILLING_VM_IP!),
  {
    name: "RabbitMQ's Prometheus exporter",
    host: 'billing',
    port: Number(env.RABBITMQ_PROMETHEUS_PORT),
    alsoOn: oneHost ? [] : [env.BILLING_VM_IP!],
  },
  // on the VMs the UI listens on every interface: the host reaches it through a forwarded port, the firewall limits it
  ...(oneHost
    ? [{ name: 'RabbitMQ management', host: 'billing' as const, port: Number(env.RABBITMQ_UI_PORT), alsoOn: [] }]
    : []),
  // the monitor's exporters, on the address it scrapes (group_vars: crud_master_node_exporter_port, …)
  { name: 'node exporter', host: 'gateway', port: 9200, alsoOn: oneHost ? [] : [env.GATEWAY_VM_IP!] },
  { name: "PostgreSQL's exporter", host: 'inventory', port: 9187, alsoOn: oneHost ? [] : [env.INVENTORY_VM_IP!] },
  ...(oneHost
    ? [
        { name: 'Prometheus', host: 'gateway' as const, port: Number(env.PROMETHEUS_PORT), alsoOn: [] },
        { name: 'Alertmanager', host: 'gateway' as const, port: Number(env.ALERTMANAGER_PORT), alsoOn: [] },
      ]
    : []),
];

describe('listening addresses of the deployed stack', () => {
  for (const { name, host, port, alsoOn } of listeners) {
    const where = alsoOn.length > 0 ? `loopback and ${alsoOn.join(', ')}` : 'loopback';
    it(`When ss lists the listeners on the ${host} host, then ${name} (:${port}) binds ${where} only`, () => {
      const addresses = listenersOn(host).get(port) ?? [];
      expect(addresses, `nothing listens on :${port}`).to.not.be.empty;
      expect(
        addresses.filter((address) => !isLoopback(address) && !alsoOn.includes(address)),
        `${name} also listens on`,
      ).to.deep.equal([]);
    });
  }
});

/**
 * The PM2 cluster-mode apps' instances accept their connections themselves (pm2_daemon_env: the daemon's
 * NODE_CLUSTER_SCHED_POLICY=none). With Node's default, the PM2 daemon accepts every connection and hands it to an
 * instance over IPC one at a time, so a flood of connections from one address queued everyone else's behind it before
 * an instance could turn the flood away.
 */
describe('who accepts the connections of the PM2 cluster-mode apps', () => {
  for (const { app, host, port } of [
    { app: 'api-gateway', host: 'gateway' as const, port: Number(env.GATEWAY_PORT) },
    {
      app: 'inventory-api',
      host: 'inventory' as const,
      port: Number(oneHost ? env.LOCAL_INVENTORY_API_PORT : env.INVENTORY_API_PORT),
    },
  ]) {
    it(`When the fds of ${app}'s instances are listed, then each holds its listening socket (:${port})`, () => {
      // the socket's inode and owner from ss (-p would need CAP_SYS_PTRACE, which the docker provider's guests lack);
      // the owner lists its own processes' fds
      const socket = onHost(host, 'ss', ['-ltnHe', `sport = :${port}`]);
      const [, uid, inode] = /uid:(\d+) ino:(\d+)/.exec(socket) ?? [];
      expect(inode, `the listening socket of :${port} in ${socket.trim()}`).to.be.a('string');
      const instances = pm2ProcessesOn(host).filter((p) => p.name === app);
      expect(instances, `${app} instances`).to.have.length(instancesOf(app));
      for (const { pm_id, pid } of instances) {
        const fds = onHost(host, 'sudo', ['-n', '-u', `#${uid}`, 'ls', '-l', `/proc/${pid}/fd`]);
        expect(fds, `${app}#${pm_id} (pid ${pid}) holds socket:[${inode}]`).to.include(`socket:[${inode}]`);
      }
    });
  }
});
