-- Up Migration
-- Orders whose (user_id, message_id) already holds a different order: the client reused an Idempotency-Key. The
-- consumer records them in the batch's own transaction, so a client's mistake costs a row, never a place in a bounded
-- queue. The order it collided with: orders JOIN rejected_orders USING (user_id, message_id).
CREATE TABLE rejected_orders (
  id              bigserial PRIMARY KEY,
  user_id         text NOT NULL,
  number_of_items integer NOT NULL,
  total_amount    numeric(12, 2) NOT NULL,
  message_id      text NOT NULL,
  reason          text NOT NULL,
  received_at     timestamptz NOT NULL DEFAULT now(),
  -- a redelivery of the same rejected order adds nothing
  UNIQUE (user_id, message_id, number_of_items, total_amount)
);

-- Dead letters the broker would not take (the dead-letter queue full or missing, a broker alarm): held here, so the
-- original is acked and the orders behind it are stored, and moved to the dead-letter queue once it takes them.
CREATE TABLE held_dead_letters (
  id         bigserial PRIMARY KEY,
  -- the dead-letter exchange it goes to (that of the consumer's RABBITMQ_QUEUE)
  exchange   text NOT NULL,
  message_id text,
  cause      text NOT NULL,
  reason     text NOT NULL,
  -- the original's AMQP properties (headers included) and body, as they go to the dead-letter exchange
  properties jsonb NOT NULL,
  content    bytea NOT NULL,
  held_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX held_dead_letters_exchange_id ON held_dead_letters (exchange, id);

-- Down Migration
DROP TABLE held_dead_letters;
DROP TABLE rejected_orders;
