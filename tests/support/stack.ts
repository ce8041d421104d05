import './env.js';
import { hostsWithApps, isThisHost } from './hosts.js';

/**
 * Where the suites and the bench reach the deployed stack. The defaults are this host after `make local`, at the ports
 * of .env; the Vagrant stage points the end-to-end suites at the VMs' forwarded ports:
 *   E2E_GATEWAY_URL, E2E_INVENTORY_URL, E2E_BILLING_HEALTH_URL   the base URL of each service
 *   E2E_RABBITMQ_API_URL                                         the management API (…:15672/api)
 *   E2E_RABBITMQ_METRICS_URL                                     RabbitMQ's Prometheus exporter (…:15692)
 *   E2E_RABBITMQ_HOST, E2E_RABBITMQ_PORT                         billing-vm's AMQP listener
 *   E2E_{GATEWAY,INVENTORY,BILLING}_METRICS_HOST                  where each service's metrics listen
 *   E2E_PROMETHEUS_URL, E2E_ALERTMANAGER_URL                     the monitor's (…:9090, …:9093)
 */
const env = process.env;
const loopback = (port: string | undefined, fallback: number) => `http://127.0.0.1:${port ?? fallback}`;

/** The stack that `make local` deployed on this host. */
export const thisHost = {
  gateway: loopback(env.GATEWAY_PORT, 8080),
  inventory: loopback(env.LOCAL_INVENTORY_API_PORT, 8081),
  billingHealth: loopback(env.BILLING_HEALTH_PORT, 8082),
};

/** The stack under test: this host's, or where E2E_*_URL says. */
export const stack = {
  gateway: env.E2E_GATEWAY_URL ?? thisHost.gateway,
  inventory: env.E2E_INVENTORY_URL ?? thisHost.inventory,
  billingHealth: env.E2E_BILLING_HEALTH_URL ?? thisHost.billingHealth,
  management: env.E2E_RABBITMQ_API_URL ?? `${loopback(env.RABBITMQ_UI_PORT, 15672)}/api`,
  rabbitmqMetrics: env.E2E_RABBITMQ_METRICS_URL ?? loopback(env.RABBITMQ_PROMETHEUS_PORT, 15692),
  broker: {
    hostname: env.E2E_RABBITMQ_HOST ?? '127.0.0.1',
    port: Number(env.E2E_RABBITMQ_PORT ?? env.RABBITMQ_PORT ?? 5672),
  },
  metricsHosts: {
    gateway: env.E2E_GATEWAY_METRICS_HOST ?? '127.0.0.1',
    inventory: env.E2E_INVENTORY_METRICS_HOST ?? '127.0.0.1',
    billing: env.E2E_BILLING_METRICS_HOST ?? '127.0.0.1',
  },
};

/** billing_queue and its vhost, as .env names them. */
export const billingQueue = {
  vhost: env.RABBITMQ_VHOST ?? 'billing_vhost',
  queue: env.RABBITMQ_QUEUE ?? 'billing_queue',
};

/**
 * The monitor: Prometheus and Alertmanager on this host after `make local` (where every service runs here), or on a
 * machine of its own where E2E_PROMETHEUS_URL and E2E_ALERTMANAGER_URL say (the Vagrant stage: monitor-vm's forwarded
 * ports).
 */
export const monitor = env.E2E_PROMETHEUS_URL
  ? { prometheus: env.E2E_PROMETHEUS_URL, alertmanager: env.E2E_ALERTMANAGER_URL ?? '', ownMachine: true }
  : hostsWithApps().every(({ host }) => isThisHost(host))
    ? {
        prometheus: loopback(env.PROMETHEUS_PORT, 9090),
        alertmanager: loopback(env.ALERTMANAGER_PORT, 9093),
        ownMachine: false,
      }
    : undefined;
