-- Up Migration
-- An Idempotency-Key is scoped per user: two users who pick the same key place two orders.
ALTER TABLE orders DROP CONSTRAINT orders_message_id_key;
ALTER TABLE orders ADD CONSTRAINT orders_user_id_message_id_key UNIQUE (user_id, message_id);

-- Down Migration
ALTER TABLE orders DROP CONSTRAINT orders_user_id_message_id_key;
ALTER TABLE orders ADD CONSTRAINT orders_message_id_key UNIQUE (message_id);
