-- How a backup of movies_db comes back (ops/host-backup.sh runs it in one transaction, with the backup's tables in
-- schema `backup` and the same migrations applied to both): the catalogue becomes the backup's, row for row. Movies
-- written since the backup are gone, those deleted since are back. The table is emptied rather than dropped, so
-- inventory-api's requests wait for the restore instead of failing on a table that no longer exists.
TRUNCATE public.movies;
INSERT INTO public.movies SELECT * FROM backup.movies;
-- The sequence only goes up: no id a client has seen is given again.
SELECT setval(seq, top)
FROM (SELECT pg_get_serial_sequence('public.movies', 'id') AS seq, max(id) AS top FROM public.movies) AS movies
WHERE top > coalesce(pg_sequence_last_value(seq::regclass), 0);
