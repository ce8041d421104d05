import { deadLetterQueueOf } from '@crud-master/shared';
import { openBroker, type TestBroker } from '@crud-master/test-support/broker';
import { testEnv, unique } from '@crud-master/test-support/env';
import { untilReady, urlOf } from '@crud-master/test-support/http';
import { type InventoryApi, start as startInventory } from '../../inventory/src/app.js';
import { loadConfig as loadInventoryConfig } from '../../inventory/src/config.js';
import { type ApiGateway, start } from '../src/app.js';
import { loadConfig } from '../src/config.js';

/**
 * An api-gateway in front of a real inventory-api, publishing to a billing queue of its own on the test broker; a
 * suite calls it in its describe(), which gets the hooks that start it (ready) and stop it. Its fields are set once
 * the suite's before() ran.
 */
export function gatewayUnderTest() {
  const queue = unique('billing-test');
  const under = {
    queue,
    inventory: undefined as unknown as InventoryApi,
    gateway: undefined as unknown as ApiGateway,
    /** the gateway's base URL */
    base: '',
    broker: undefined as unknown as TestBroker,
    /** Another gateway in front of the same inventory and queue, with these settings (the caller stops it). */
    startGateway: (overrides: Record<string, string | number> = {}) =>
      start(
        loadConfig(
          testEnv({
            GATEWAY_HOST: '127.0.0.1',
            GATEWAY_PORT: 0,
            INVENTORY_API_URL: urlOf(under.inventory.server),
            RABBITMQ_QUEUE: queue,
            ...overrides,
          }),
        ),
      ),
  };

  before(async () => {
    under.inventory = await startInventory(
      loadInventoryConfig(testEnv({ INVENTORY_API_HOST: '127.0.0.1', INVENTORY_API_PORT: 0 })),
    );
    under.gateway = await under.startGateway();
    under.base = urlOf(under.gateway.server);
    under.broker = await openBroker();
    await under.broker.declare(queue);
    await untilReady(under.base, 10_000, 'the gateway to be ready');
  });

  after(async () => {
    await under.gateway.stop();
    await under.inventory.stop();
    await under.broker.deleteQueues(queue, deadLetterQueueOf(queue));
    await under.broker.close();
  });

  return under;
}
