-- Up Migration
CREATE TABLE orders (
  id              bigserial PRIMARY KEY,
  user_id         text NOT NULL,
  number_of_items integer NOT NULL CHECK (number_of_items > 0),
  total_amount    numeric(12, 2) NOT NULL CHECK (total_amount >= 0),
  -- the AMQP messageId (the client's Idempotency-Key or a UUID): a redelivered message inserts nothing
  message_id      text NOT NULL UNIQUE,
  created_at      timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE orders;
