import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** Why a message was dead-lettered. */
export const DEAD_LETTER_CAUSES = ['poison', 'key-reused-with-another-order', 'rejected-by-database'] as const;
export type DeadLetterCause = (typeof DEAD_LETTER_CAUSES)[number];

/** The consumer's figures, beside the HTTP ones of its health listener. */
export function consumerMetrics(registry: Registry) {
  const registers = [registry];
  const deadLettered = new Counter({
    name: 'billing_dead_lettered_total',
    help: 'Messages moved to the dead-letter queue, by cause.',
    labelNames: ['cause'],
    registers,
  });
  for (const cause of DEAD_LETTER_CAUSES) deadLettered.inc({ cause }, 0);
  return {
    deadLettered,
    batchSize: new Histogram({
      name: 'billing_batch_size',
      help: 'Deliveries per batch stored in one transaction.',
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500],
      registers,
    }),
    inserted: new Counter({ name: 'billing_orders_inserted_total', help: 'Order rows inserted into billing_db (a redelivery of a stored order adds none).', registers }),
    redeliveries: new Counter({ name: 'billing_redeliveries_total', help: 'Deliveries the broker flagged as redelivered.', registers }),
    publishToCommit: new Histogram({
      name: 'billing_publish_to_commit_seconds',
      help: "From the gateway's publish to the commit of the order in billing_db (the consumer's lag; across hosts, their clocks' offset too).",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
      registers,
    }),
  };
}

export type ConsumerMetrics = ReturnType<typeof consumerMetrics>;

/** billing_consuming: 1 while the consumer consumes billing_queue, read at each scrape. */
export function consumingGauge(registry: Registry, isConsuming: () => boolean): void {
  new Gauge({
    name: 'billing_consuming',
    help: '1 while billing-consumer consumes billing_queue over a live connection, else 0.',
    registers: [registry],
    collect() {
      this.set(isConsuming() ? 1 : 0);
    },
  });
}

/** The dead-letter counts by cause, as /readyz shows them. */
export async function deadLetteredByCause(metrics: ConsumerMetrics): Promise<Record<string, number>> {
  const { values } = await metrics.deadLettered.get();
  return Object.fromEntries(values.map(({ labels, value }) => [String(labels.cause), value]));
}
