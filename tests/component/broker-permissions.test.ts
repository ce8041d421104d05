import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { billingTopology } from '@crud-master/shared';
import { migrate } from '@crud-master/shared/database';
import { openBroker, type TestBroker } from '@crud-master/test-support/broker';
import { testEnv, unique } from '@crud-master/test-support/env';
import { eventually, request, urlOf } from '@crud-master/test-support/http';
import { openOrders, type TestOrders } from '@crud-master/test-support/orders';
import { expect } from 'chai';
import { type BillingConsumer, start as startConsumer } from '../../services/billing/src/app.js';
import { loadConfig as loadBillingConfig, MIGRATIONS_DIR } from '../../services/billing/src/config.js';
import { type ApiGateway, start as startGateway } from '../../services/gateway/src/app.js';
import { loadConfig as loadGatewayConfig } from '../../services/gateway/src/config.js';

const rabbitmqctl = (...args: string[]) =>
  execFileSync(
    process.getuid?.() === 0 ? 'rabbitmqctl' : 'sudo',
    [...(process.getuid?.() === 0 ? [] : ['-n', 'rabbitmqctl']), ...args],
    { encoding: 'utf8' },
  );

/**
 * The services with the narrowest RabbitMQ permissions of the plan, in a throwaway vhost: the publisher may only write
 * to the default exchange, the consumer may configure and read only its queues and write only to the dead-letter
 * exchange. Everything still works: the gateway publishes, the consumer declares, consumes and dead-letters.
 */
describe('billing with least-privilege RabbitMQ users', () => {
  const vhost = unique('crud-perm');
  const queue = 'billing_queue';
  const { deadLetterQueue } = billingTopology(queue);
  const publisher = { user: unique('publisher'), password: randomBytes(12).toString('hex') };
  const consumerUser = { user: unique('consumer'), password: randomBytes(12).toString('hex') };
  const q = queue.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  let gateway: ApiGateway;
  let consumer: BillingConsumer;
  let admin: TestBroker;
  let orders: TestOrders;
  let billingUrl: string;

  before(async function () {
    this.timeout(60_000);
    rabbitmqctl('add_vhost', vhost);
    for (const { user, password } of [publisher, consumerUser]) rabbitmqctl('add_user', user, password);
    rabbitmqctl('set_permissions', '-p', vhost, publisher.user, '^$', '^amq\\.default$', '^$');
    rabbitmqctl(
      'set_permissions',
      '-p',
      vhost,
      consumerUser.user,
      `^${q}(\\.dlx|\\.dead-letter)?$`,
      `^${q}\\.(dlx|dead-letter)$`,
      `^${q}(\\.dlx)?$`,
    );
    rabbitmqctl('set_permissions', '-p', vhost, process.env.RABBITMQ_USER!, '.*', '.*', '.*');
    await migrate(loadBillingConfig(testEnv()).db, MIGRATIONS_DIR);
    orders = await openOrders();
    const broker = { RABBITMQ_VHOST: vhost, RABBITMQ_QUEUE: queue };
    consumer = await startConsumer(
      loadBillingConfig(
        testEnv({
          ...broker,
          RABBITMQ_USER: consumerUser.user,
          RABBITMQ_PASSWORD: consumerUser.password,
          BILLING_HEALTH_HOST: '127.0.0.1',
          BILLING_HEALTH_PORT: 0,
        }),
      ),
    );
    gateway = await startGateway(
      loadGatewayConfig(
        testEnv({
          ...broker,
          RABBITMQ_USER: publisher.user,
          RABBITMQ_PASSWORD: publisher.password,
          GATEWAY_HOST: '127.0.0.1',
          GATEWAY_PORT: 0,
          INVENTORY_API_URL: 'http://127.0.0.1:9',
        }),
      ),
    );
    billingUrl = urlOf(gateway.server, '/api/billing');
    const previousVhost = process.env.RABBITMQ_VHOST;
    process.env.RABBITMQ_VHOST = vhost;
    admin = await openBroker().finally(() => (process.env.RABBITMQ_VHOST = previousVhost));
    await eventually(
      async () => ((await admin.inspect(queue))?.consumerCount === 1 ? true : undefined),
      10_000,
      'the consumer consuming',
    );
  });

  after(async () => {
    await gateway?.stop();
    await consumer?.stop();
    await admin?.close();
    await orders?.close();
    rabbitmqctl('delete_vhost', vhost);
    for (const { user } of [publisher, consumerUser]) rabbitmqctl('delete_user', user);
  });

  it(
    'When the gateway publishes as the publisher and billing-consumer consumes as the consumer, ' +
      'then an order is stored',
    async () => {
      const key = unique('least-privilege');
      const reply = await request(billingUrl, {
        method: 'POST',
        headers: { 'Idempotency-Key': key },
        json: { user_id: 'usr_perm', number_of_items: 1, total_amount: '2.50' },
      });
      expect(reply.status, JSON.stringify(reply.body)).to.equal(202);
      await eventually(
        async () => ((await orders.countsOf([key]))[0] === 1 ? true : undefined),
        10_000,
        'the order stored',
      );
    },
  );

  it('When a poison message arrives, then the consumer may dead-letter it through the exchange', async () => {
    await admin.publish(queue, 'not an order', { messageId: unique('perm-poison') });
    const dead = await eventually(() => admin.take(deadLetterQueue), 5_000, 'a dead letter');
    expect(dead.properties.headers?.['x-dead-letter-reason']).to.match(/not JSON/);
  });

  it(
    'When billing_queue is deleted, ' +
      'then the consumer declares it again with its own permissions and the gateway publishes again',
    async () => {
      await admin.channel.deleteQueue(queue);
      await eventually(
        async () => ((await admin.inspect(queue))?.consumerCount === 1 ? true : undefined),
        10_000,
        'the queue back with a consumer',
      );
      const key = unique('least-privilege-after');
      expect(
        (
          await request(billingUrl, {
            method: 'POST',
            headers: { 'Idempotency-Key': key },
            json: { user_id: 'usr_perm', number_of_items: 1, total_amount: 1 },
          })
        ).status,
      ).to.equal(202);
      await eventually(
        async () => ((await orders.countsOf([key]))[0] === 1 ? true : undefined),
        10_000,
        'the order stored',
      );
    },
  );
});
