import { unique } from '@crud-master/test-support/env';
import { onHost } from '@crud-master/test-support/hosts';
import { eventually, request } from '@crud-master/test-support/http';
import { instanceUrls, moved, scrape, scrapeInstances, series } from '@crud-master/test-support/metrics';
import { orderCounts, psqlBilling } from '@crud-master/test-support/operator';
import { expectProblem } from '@crud-master/test-support/problem';
import { billingQueue, stack } from '@crud-master/test-support/stack';
import { expect } from 'chai';

/**
 * Prometheus' view of the deployed stack: each service's /metrics on its own listener (one port per PM2 instance),
 * and RabbitMQ's exporter (rabbitmq_prometheus). On one host they are on loopback; the Vagrant stage points these at
 * the VMs' private IPs, which the firewalls open to the scrapers (the host):
 *   E2E_GATEWAY_METRICS_HOST, E2E_INVENTORY_METRICS_HOST, E2E_BILLING_METRICS_HOST, E2E_RABBITMQ_METRICS_URL (…:15692)
 */
const env = process.env;
const { gateway, rabbitmqMetrics } = stack;
const metricsOf = {
  gateway: instanceUrls('api-gateway', stack.metricsHosts.gateway, Number(env.GATEWAY_METRICS_PORT ?? 9100)),
  inventory: instanceUrls('inventory-api', stack.metricsHosts.inventory, Number(env.INVENTORY_METRICS_PORT ?? 9110)),
  billing: instanceUrls('billing-consumer', stack.metricsHosts.billing, Number(env.BILLING_METRICS_PORT ?? 9120)),
};
const { vhost, queue } = billingQueue;

/** Every instance of each service, added up. */
const scrapeAll = async () => {
  const [gatewaySamples, inventorySamples, billingSamples] = await Promise.all(
    Object.values(metricsOf).map(scrapeInstances),
  );
  return { gateway: gatewaySamples!, inventory: inventorySamples!, billing: billingSamples! };
};

const pm2 = (...args: string[]) => onHost('billing', 'pm2', args);

/** billing_queue's ready messages as RabbitMQ's exporter reports them (per-queue figures: /metrics/detailed). */
async function readyByExporter(): Promise<number | undefined> {
  const samples = await scrape(
    `${rabbitmqMetrics}/metrics/detailed?vhost=${encodeURIComponent(vhost)}&family=queue_coarse_metrics`,
  );
  return samples.get(series('rabbitmq_detailed_queue_messages_ready', { queue, vhost }));
}

describe('the metrics of the deployed stack (Prometheus)', () => {
  it(
    'When orders and movie requests go through :8080, ' +
      'then the gateway, inventory and billing counters move by exactly that much',
    async () => {
      const before = await scrapeAll();
      const keys = [unique('metrics-e2e'), unique('metrics-e2e'), unique('metrics-e2e')];
      for (const key of keys) {
        const reply = await request(`${gateway}/api/billing`, {
          method: 'POST',
          headers: { 'Idempotency-Key': key },
          json: { user_id: 'usr_metrics', number_of_items: 2, total_amount: '3.00' },
        });
        expect(reply.status).to.equal(202);
      }
      expectProblem(await request(`${gateway}/api/billing`, { method: 'POST', json: { user_id: 'usr_metrics' } }), 400);
      for (let i = 0; i < 2; i++) expectProblem(await request(`${gateway}/api/movies/999999999999`), 404);
      await eventually(
        () => (orderCounts(psqlBilling, keys).every((n) => n === 1) ? true : undefined),
        15_000,
        'the orders in billing_db',
      );
      const after = await scrapeAll();

      expect(moved(before.gateway, after.gateway, 'gateway_orders_total', { outcome: 'accepted' })).to.equal(3);
      expect(moved(before.gateway, after.gateway, 'gateway_orders_total', { outcome: 'invalid' })).to.equal(1);
      expect(
        moved(before.gateway, after.gateway, 'gateway_broker_confirm_seconds_count', { outcome: 'confirmed' }),
      ).to.equal(3);
      expect(
        moved(before.gateway, after.gateway, 'http_requests_total', {
          method: 'POST',
          route: '/api/billing',
          status: 202,
        }),
      ).to.equal(3);
      expect(
        moved(before.gateway, after.gateway, 'http_requests_total', {
          method: 'GET',
          route: '/api/movies/:id',
          status: 404,
        }),
      ).to.equal(2);
      expect(
        moved(before.inventory, after.inventory, 'http_requests_total', {
          method: 'GET',
          route: '/api/movies/:id',
          status: 404,
        }),
      ).to.equal(2);
      expect(moved(before.billing, after.billing, 'billing_orders_inserted_total')).to.equal(3);
      expect(moved(before.billing, after.billing, 'billing_publish_to_commit_seconds_count')).to.equal(3);
      expect(after.billing.get('billing_consuming')).to.equal(1);
    },
  );

  it(
    'When the consumer is stopped, ' +
      "then RabbitMQ's exporter shows the orders waiting in billing_queue, and none once it is back",
    async () => {
      const before = await eventually(readyByExporter, 10_000, `${queue} in the exporter`);
      const keys = [unique('metrics-depth'), unique('metrics-depth')];
      pm2('stop', 'billing-consumer');
      try {
        for (const key of keys) {
          expect(
            (
              await request(`${gateway}/api/billing`, {
                method: 'POST',
                headers: { 'Idempotency-Key': key },
                json: { user_id: 'usr_metrics', number_of_items: 1, total_amount: 1 },
              })
            ).status,
          ).to.equal(202);
        }
        // the exporter's queue figures are refreshed every few seconds (collect_statistics_interval)
        await eventually(
          async () => ((await readyByExporter()) === before + keys.length ? true : undefined),
          20_000,
          `${keys.length} more ready messages`,
        );
      } finally {
        pm2('restart', 'billing-consumer');
      }
      await eventually(
        () => (orderCounts(psqlBilling, keys).every((n) => n === 1) ? true : undefined),
        20_000,
        'the orders in billing_db',
      );
      await eventually(async () => ((await readyByExporter()) === 0 ? true : undefined), 20_000, 'an empty queue');
    },
  );

  it(
    'When /metrics is asked for on the public :8080, ' + 'then it is there only if GATEWAY_PUBLIC_METRICS is true',
    async () => {
      if (env.GATEWAY_PUBLIC_METRICS === 'true')
        expect((await scrape(`${gateway}/metrics`)).has('gateway_orders_total{outcome="accepted"}')).to.equal(true);
      else expectProblem(await request(`${gateway}/metrics`), 404);
    },
  );
});
