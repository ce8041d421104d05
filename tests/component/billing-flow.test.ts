import { deadLetterQueueOf } from '@crud-master/shared';
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

/** The billing flow across services, in one process: POST /api/billing → billing_queue → consumer → billing_db. */
describe('billing flow: gateway → RabbitMQ → billing-consumer → PostgreSQL', () => {
  const queue = unique('billing-flow');
  let gateway: ApiGateway;
  let consumer: BillingConsumer | undefined;
  let broker: TestBroker;
  let orders: TestOrders;
  let billingUrl: string;

  const launchConsumer = () =>
    startConsumer(
      loadBillingConfig(testEnv({ BILLING_HEALTH_HOST: '127.0.0.1', BILLING_HEALTH_PORT: 0, RABBITMQ_QUEUE: queue })),
    );

  const post = (key: string, body: unknown = { user_id: 'usr_flow', number_of_items: 2, total_amount: '10.5' }) =>
    request(billingUrl, { method: 'POST', headers: { 'Idempotency-Key': key }, json: body });

  const storedOnce = (keys: string[]) =>
    eventually(
      async () => ((await orders.countsOf(keys)).every((n) => n === 1) ? true : undefined),
      15_000,
      `${keys.length} orders stored once`,
    );

  before(async () => {
    await migrate(loadBillingConfig(testEnv()).db, MIGRATIONS_DIR);
    orders = await openOrders();
    broker = await openBroker();
    await broker.declare(queue);
    gateway = await startGateway(
      loadGatewayConfig(
        testEnv({
          GATEWAY_HOST: '127.0.0.1',
          GATEWAY_PORT: 0,
          INVENTORY_API_URL: 'http://127.0.0.1:9',
          RABBITMQ_QUEUE: queue,
        }),
      ),
    );
    billingUrl = urlOf(gateway.server, '/api/billing');
    consumer = await launchConsumer();
  });

  after(async () => {
    await consumer?.stop();
    await gateway.stop();
    await broker.deleteQueues(queue, deadLetterQueueOf(queue));
    await broker.close();
    await orders.close();
  });

  it('When an order is posted, then it answers 202 and the order lands in billing_db exactly once', async () => {
    const key = unique('flow');
    expect((await post(key)).status).to.equal(202);
    await storedOnce([key]);
    expect(await orders.rowsOf([key])).to.deep.equal([
      { user_id: 'usr_flow', number_of_items: 2, total_amount: '10.50', message_id: key },
    ]);
  });

  it('When a client retries with the same Idempotency-Key, then both get 202 and one order is stored', async () => {
    const key = unique('retry');
    expect((await post(key)).status).to.equal(202);
    expect((await post(key)).status).to.equal(202);
    await storedOnce([key]);
    await eventually(async () => ((await broker.count(queue)) === 0 ? true : undefined));
    expect(await orders.countsOf([key])).to.deep.equal([1]);
  });

  it(
    'When the consumer is stopped, ' + 'then orders wait Ready in the queue and are all stored once it restarts',
    async () => {
      await consumer!.stop();
      consumer = undefined;
      const keys = Array.from({ length: 5 }, () => unique('resilience'));
      for (const key of keys) expect((await post(key)).status).to.equal(202);
      expect(await broker.count(queue)).to.equal(5);
      expect(await orders.countsOf(keys)).to.deep.equal([0, 0, 0, 0, 0]);
      consumer = await launchConsumer();
      await storedOnce(keys);
      expect(await broker.count(queue)).to.equal(0);
    },
  );
});
