import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { DEAD_LETTER_CAUSES } from './domain/orders.js';
import type { DeadLettering } from './entry-points/consumer.js';

/** The consumer's figures, beside the HTTP ones of its health listener. */
export function consumerMetrics(registry: Registry) {
  const registers = [registry];
  const byCause = (name: string, help: string) => {
    const counter = new Counter({ name, help, labelNames: ['cause'], registers });
    for (const cause of DEAD_LETTER_CAUSES) counter.inc({ cause }, 0);
    return counter;
  };
  const storeFailures = new Counter({
    name: 'billing_store_failures_total',
    help:
      'Failed attempts to settle a batch, by kind: passing (the database is down) ' +
      'or permanent (retrying cannot cure it).',
    labelNames: ['kind'],
    registers,
  });
  for (const kind of ['passing', 'permanent']) storeFailures.inc({ kind }, 0);
  return {
    deadLettered: byCause('billing_dead_lettered_total', 'Messages moved to the dead-letter queue, by cause.'),
    heldAside: byCause(
      'billing_dead_letters_held_total',
      'Dead letters the broker did not take, held in billing_db instead, by cause.',
    ),
    storeFailures,
    batchSize: new Histogram({
      name: 'billing_batch_size',
      help: 'Deliveries per batch stored in one transaction.',
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500],
      registers,
    }),
    inserted: new Counter({
      name: 'billing_orders_inserted_total',
      help: 'Order rows inserted into billing_db (a redelivery of a stored order adds none).',
      registers,
    }),
    rejected: new Counter({
      name: 'billing_orders_rejected_total',
      help:
        'Orders recorded in rejected_orders: ' +
        'their Idempotency-Key was already used by the same user for another order.',
      registers,
    }),
    redeliveries: new Counter({
      name: 'billing_redeliveries_total',
      help: 'Deliveries the broker flagged as redelivered.',
      registers,
    }),
    publishToCommit: new Histogram({
      name: 'billing_publish_to_commit_seconds',
      help:
        "From the gateway's publish to the commit of the order in billing_db (the consumer's lag; across hosts, " +
        "their clocks' offset too).",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
      registers,
    }),
  };
}

export type ConsumerMetrics = ReturnType<typeof consumerMetrics>;

/** What the gauges read at each scrape. */
interface ConsumerGauges {
  isConsuming: () => boolean;
  isStoreFailing: () => boolean;
  deadLettering: () => Promise<DeadLettering>;
  maxLength: number;
}

/** Gauges read at each scrape: consuming, storing failing, and the dead letters waiting or held. */
export function consumerGauges(
  registry: Registry,
  { isConsuming, isStoreFailing, deadLettering, maxLength }: ConsumerGauges,
): void {
  const registers = [registry];
  // one look at the broker and billing_db per scrape, for the three gauges that read it
  let reading: Promise<DeadLettering | undefined> | undefined;
  const read = () =>
    (reading ??= deadLettering()
      .catch(() => undefined)
      .finally(() => setTimeout(() => (reading = undefined), 1_000).unref()));
  new Gauge({
    name: 'billing_consuming',
    help: '1 while billing-consumer consumes billing_queue over a live connection, else 0.',
    registers,
    collect() {
      this.set(isConsuming() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'billing_store_failing',
    help: '1 while the last attempt to store a batch failed (the orders wait in the queue), else 0.',
    registers,
    collect() {
      this.set(isStoreFailing() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'billing_dead_letters_held',
    help:
      'Dead letters held in billing_db because the broker did not take them ' +
      '(absent when billing_db does not answer).',
    registers,
    async collect() {
      const figures = await read();
      if (figures?.held != null) this.set(figures.held);
    },
  });
  new Gauge({
    name: 'billing_dead_letter_oldest_held_seconds',
    help: 'Age of the oldest dead letter held in billing_db (0 when none is).',
    registers,
    async collect() {
      const figures = await read();
      if (figures?.held != null) this.set(figures.oldestHeldSeconds ?? 0);
    },
  });
  new Gauge({
    name: 'billing_dead_letter_queue_messages',
    help: 'Messages in the dead-letter queue (absent when the broker cannot tell).',
    registers,
    async collect() {
      const depth = (await read())?.depth;
      if (depth != null) this.set(depth);
    },
  });
  new Gauge({
    name: 'billing_dead_letter_queue_max_length',
    help:
      'How many messages the dead-letter queue holds at most (its policy); ' +
      'past it, dead letters are held in billing_db.',
    registers,
  }).set(maxLength);
}

/** The dead-letter counts by cause, as /readyz shows them. */
export async function countsByCause(counter: Counter): Promise<Record<string, number>> {
  const { values } = await counter.get();
  return Object.fromEntries(values.map(({ labels, value }) => [String(labels.cause), value]));
}
