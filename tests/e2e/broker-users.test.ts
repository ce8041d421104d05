import { unique } from '@crud-master/test-support/env';
import { onHost, type Host } from '@crud-master/test-support/hosts';
import { request } from '@crud-master/test-support/http';
import { management, managementAuth } from '@crud-master/test-support/operator';
import { billingQueue, stack } from '@crud-master/test-support/stack';
import amqplib, { type Channel, type ChannelModel, type ConfirmChannel } from 'amqplib';
import { expect } from 'chai';

/**
 * RabbitMQ users of the deployed stack: each service logs in as its own user with the
 * narrowest permissions, the .env administrator is for the UI only, and a policy bounds the dead-letter queue.
 * The broker is this host's RabbitMQ; the Vagrant stage points E2E_RABBITMQ_HOST and E2E_RABBITMQ_PORT at a tunnel to
 * billing-vm's (through gateway-vm: its firewall lets no one else in).
 */
const env = process.env;
const { vhost, queue } = billingQueue;
const deadLetterQueue = `${queue}.dead-letter`;
const ENV_DIR = env.CRUD_MASTER_ENV_DIR ?? '/etc/crud-master';
const vhostPath = encodeURIComponent(vhost);

async function connectAs(username: string | undefined, password: string | undefined): Promise<ChannelModel> {
  const connection = await amqplib.connect({
    ...stack.broker,
    username,
    password,
    vhost,
  });
  connection.on('error', () => undefined);
  return connection;
}

/** The broker's answer to one operation on a fresh channel: '' when it was allowed, else the error's text. */
async function outcome<C extends Channel>(
  open: () => Promise<C>,
  operation: (channel: C) => Promise<unknown>,
): Promise<string> {
  const channel = await open();
  // a refusal closes the channel: the operation's promise rejects, or (a publish) only the channel says so
  const closed = new Promise<string>((resolve) => channel.on('error', (error: Error) => resolve(error.message)));
  try {
    const result = await Promise.race([operation(channel).then(() => ''), closed]);
    if (result === '') await channel.close();
    return result;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/** Publishes one persistent message, mandatory, on a confirm channel; '' when the broker confirmed and routed it. */
const publishTo = (connection: ChannelModel, routingKey: string, body: unknown) =>
  outcome(
    () => connection.createConfirmChannel(),
    (channel: ConfirmChannel) =>
      new Promise<void>((resolve, reject) => {
        channel.on('return', () => reject(new Error('returned: no queue took it')));
        channel.sendToQueue(
          routingKey,
          Buffer.from(JSON.stringify(body)),
          {
            persistent: true,
            mandatory: true,
            contentType: 'application/json',
            messageId: unique('e2e-publisher'),
          },
          (error: unknown) =>
            error ? reject(new Error(`nacked: ${JSON.stringify(error)}`)) : setTimeout(resolve, 100),
        );
      }),
  );

/** KEY=value pairs of an app's env file on its host. */
function envFileOf(host: Host, app: string): Record<string, string> {
  const text = onHost(host, 'cat', [`${ENV_DIR}/${app}.env`]);
  return Object.fromEntries(
    text
      .split('\n')
      .map((line) => /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=["']?(.*?)["']?$/.exec(line.trim()))
      .filter((match): match is RegExpExecArray => match !== null)
      .map((match) => [match[1]!, match[2]!]),
  );
}

describe('RabbitMQ users and policies of the deployed stack', () => {
  describe('the publisher (api-gateway)', () => {
    let publisher: ChannelModel;
    before(async () => {
      publisher = await connectAs(env.RABBITMQ_PUBLISHER_USER, env.RABBITMQ_PUBLISHER_PASSWORD);
    });
    after(() => publisher?.close());

    it(`When the publisher publishes an order to ${queue}, then the broker confirms and routes it`, async () => {
      expect(
        await publishTo(publisher, queue, {
          user_id: unique('e2e-publisher'),
          number_of_items: 1,
          total_amount: '1.00',
        }),
      ).to.equal('');
    });

    for (const [what, operation] of [
      [`consume ${queue}`, (channel: Channel) => channel.consume(queue, () => undefined)],
      [`read ${queue} (basic.get)`, (channel: Channel) => channel.get(queue)],
      [`purge ${queue}`, (channel: Channel) => channel.purgeQueue(queue)],
      // ifUnused: a broker that wrongly allowed it still keeps the queue that billing-consumer consumes
      [`delete ${queue}`, (channel: Channel) => channel.deleteQueue(queue, { ifUnused: true, ifEmpty: true })],
      ['declare a queue', (channel: Channel) => channel.assertQueue(unique('e2e-publisher'), { autoDelete: true })],
    ] as const) {
      it(`When the publisher tries to ${what}, then the broker refuses (ACCESS_REFUSED)`, async () => {
        expect(await outcome(() => publisher.createChannel(), operation)).to.match(/ACCESS_REFUSED/);
      });
    }
  });

  describe('the consumer (billing-consumer)', () => {
    let consumer: ChannelModel;
    before(async () => {
      consumer = await connectAs(env.RABBITMQ_CONSUMER_USER, env.RABBITMQ_CONSUMER_PASSWORD);
    });
    after(() => consumer?.close());

    it(
      `When the consumer publishes to ${queue} (the default exchange), ` + `then the broker refuses (ACCESS_REFUSED)`,
      async () => {
        expect(
          await publishTo(consumer, queue, {
            user_id: unique('e2e-consumer'),
            number_of_items: 1,
            total_amount: '1.00',
          }),
        ).to.match(/ACCESS_REFUSED/);
      },
    );

    it(
      `When the consumer declares a queue other than ${queue} and its dead-letter pair, ` +
        `then the broker refuses (ACCESS_REFUSED)`,
      async () => {
        expect(
          await outcome(
            () => consumer.createChannel(),
            (channel) => channel.assertQueue(unique('e2e-consumer'), { autoDelete: true }),
          ),
        ).to.match(/ACCESS_REFUSED/);
      },
    );
  });

  it(
    'When the env files of the services are read, ' +
      'then api-gateway holds the publisher, billing-consumer the consumer, and neither the ' +
      'administrator',
    () => {
      const gateway = envFileOf('gateway', 'api-gateway');
      const consumer = envFileOf('billing', 'billing-consumer');
      expect(gateway.RABBITMQ_USER, 'api-gateway.env').to.equal(env.RABBITMQ_PUBLISHER_USER);
      expect(consumer.RABBITMQ_USER, 'billing-consumer.env').to.equal(env.RABBITMQ_CONSUMER_USER);
      for (const [app, file] of [
        ['api-gateway', gateway],
        ['billing-consumer', consumer],
      ] as const) {
        expect(Object.values(file), `${app}.env holds the administrator's password`).to.not.include(
          env.RABBITMQ_PASSWORD,
        );
      }
    },
  );

  describe('the dead-letter queue', () => {
    const policyName = 'billing-dead-letter-bound';

    it(
      `When ${deadLetterQueue} is looked at, ` +
        `then the ${policyName} policy bounds it: max-length, overflow reject-publish`,
      async () => {
        const policy = await request(`${management}/policies/${vhostPath}/${policyName}`, { headers: managementAuth });
        expect(policy.status, `the policy ${policyName}`).to.equal(200);
        expect(policy.body).to.include({
          'apply-to': 'queues',
          pattern: `^${queue.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.dead-letter$`,
        });
        const dlq = await request(`${management}/queues/${vhostPath}/${encodeURIComponent(deadLetterQueue)}`, {
          headers: managementAuth,
        });
        expect(dlq.status, deadLetterQueue).to.equal(200);
        expect(dlq.body.policy).to.equal(policyName);
        expect(dlq.body.effective_policy_definition).to.include({ overflow: 'reject-publish' });
        expect(dlq.body.effective_policy_definition['max-length']).to.be.a('number').above(0);
      },
    );

    it(
      'When a queue under the same bound is full, ' +
        'then a publish beyond the bound is refused (nack), not dropped silently',
      async () => {
        // the real dead-letter queue holds 10,000: a throwaway queue gets the deployed definition with a bound of 2
        const deployed = (
          await request(`${management}/policies/${vhostPath}/${policyName}`, { headers: managementAuth })
        ).body.definition;
        const name = unique('e2e-bound');
        const policyUrl = `${management}/policies/${vhostPath}/${encodeURIComponent(name)}`;
        const created = await request(policyUrl, {
          method: 'PUT',
          headers: managementAuth,
          json: {
            pattern: `^${name}$`,
            'apply-to': 'queues',
            priority: 100,
            definition: { ...deployed, 'max-length': 2 },
          },
        });
        expect(created.status).to.be.oneOf([201, 204]);
        const admin = await connectAs(env.RABBITMQ_USER, env.RABBITMQ_PASSWORD);
        try {
          const channel = await admin.createConfirmChannel();
          await channel.assertQueue(name, { durable: false, autoDelete: false });
          const confirms: boolean[] = [];
          for (let i = 0; i < 3; i += 1) {
            confirms.push(
              await new Promise<boolean>((resolve) =>
                channel.sendToQueue(name, Buffer.from(`m${i}`), {}, (error) => resolve(!error)),
              ),
            );
          }
          expect(confirms, 'confirmed (true) or refused (false), in order').to.deep.equal([true, true, false]);
          expect((await channel.checkQueue(name)).messageCount).to.equal(2);
          await channel.deleteQueue(name);
        } finally {
          await admin.close();
          await request(policyUrl, { method: 'DELETE', headers: managementAuth });
        }
      },
    );
  });
});
