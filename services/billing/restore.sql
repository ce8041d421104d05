-- How a backup of billing_db comes back (ops/host-backup.sh runs it in one transaction, with the backup's tables in
-- schema `backup` and the same migrations applied to both). Orders are facts: the restore adds those of the backup
-- that billing_db lacks, and keeps every row stored since the backup. So an order still queued when the backup was
-- taken is not lost: it is either stored by now (and kept) or still in billing_queue, which the restore leaves alone.
-- An order is the same order by its key (user_id, message_id), as the consumer's idempotency has it.

-- An order of the backup keeps its id unless a row stored since took it (on a fresh billing_db, say).
INSERT INTO public.orders
SELECT b.* FROM backup.orders b
WHERE NOT EXISTS (SELECT 1 FROM public.orders o WHERE (o.user_id, o.message_id) = (b.user_id, b.message_id))
  AND NOT EXISTS (SELECT 1 FROM public.orders o WHERE o.id = b.id);
SELECT setval(seq, top)
FROM (SELECT pg_get_serial_sequence('public.orders', 'id') AS seq, max(id) AS top FROM public.orders) AS orders
WHERE top > coalesce(pg_sequence_last_value(seq::regclass), 0);
INSERT INTO public.orders (user_id, number_of_items, total_amount, message_id, created_at)
SELECT b.user_id, b.number_of_items, b.total_amount, b.message_id, b.created_at FROM backup.orders b
WHERE NOT EXISTS (SELECT 1 FROM public.orders o WHERE (o.user_id, o.message_id) = (b.user_id, b.message_id))
ORDER BY b.id;

-- An order of the backup whose key a different order holds now (the client reused the key after the backup): kept as a
-- rejected order, as the consumer records any reused key.
INSERT INTO public.rejected_orders (user_id, number_of_items, total_amount, message_id, reason, received_at)
SELECT b.user_id, b.number_of_items, b.total_amount, b.message_id,
       'restored from a backup: the key holds another order since', b.created_at
FROM backup.orders b
JOIN public.orders o USING (user_id, message_id)
WHERE (o.number_of_items, o.total_amount) IS DISTINCT FROM (b.number_of_items, b.total_amount)
ON CONFLICT DO NOTHING;

INSERT INTO public.rejected_orders (user_id, number_of_items, total_amount, message_id, reason, received_at)
SELECT user_id, number_of_items, total_amount, message_id, reason, received_at FROM backup.rejected_orders
ON CONFLICT DO NOTHING;

-- Dead letters held at the backup: one no longer held was either moved to the dead-letter queue since, or lost with
-- billing_db. It is held again, and so may reach the dead-letter queue twice (with its message id): never zero times.
INSERT INTO public.held_dead_letters (exchange, message_id, cause, reason, properties, content, held_at)
SELECT b.exchange, b.message_id, b.cause, b.reason, b.properties, b.content, b.held_at FROM backup.held_dead_letters b
WHERE NOT EXISTS (
  SELECT 1 FROM public.held_dead_letters h
  WHERE (h.exchange, h.message_id, h.held_at, h.content) IS NOT DISTINCT FROM (b.exchange, b.message_id, b.held_at, b.content)
)
ORDER BY b.id;
