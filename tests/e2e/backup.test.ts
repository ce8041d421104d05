import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { unique } from '@crud-master/test-support/env';
import { hostsWithApps, onHost } from '@crud-master/test-support/hosts';
import { eventually, request } from '@crud-master/test-support/http';
import { orderCounts, psqlBilling, psqlMovies, startBillingConsumer } from '@crud-master/test-support/operator';
import { stack } from '@crud-master/test-support/stack';
import { expect } from 'chai';

/**
 * `make backup` and `make restore` as an operator runs them, from the checkout: on this host after `make local`; in the
 * Vagrant stage, on the VMs that `make up` made. The tables are compared row for row, every column (by a digest).
 */
const checkout = fileURLToPath(new URL('../..', import.meta.url));
const { gateway } = stack;
const make = (...args: string[]): string =>
  execFileSync('make', ['--no-print-directory', ...args], { cwd: checkout, encoding: 'utf8' });
/** A table's rows, every column, in id order, as their count and one digest: a table of any size compares in a line. */
const rowsOf = (table: string) =>
  `SELECT count(*) || ' rows, md5 ' || md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t.id), '')) FROM ${table} t`;
const movieRows = () => psqlMovies(rowsOf('movies'));
const orderRows = () => psqlBilling(rowsOf('orders'));

async function postMovie(title: string): Promise<number> {
  const reply = await request(`${gateway}/api/movies`, {
    method: 'POST',
    json: { title, description: 'kept by the backup' },
  });
  expect(reply.status, `POST ${title}`).to.equal(201);
  return reply.body.id;
}

async function postOrders(user: string, keys: string[]): Promise<void> {
  for (const key of keys) {
    const reply = await request(`${gateway}/api/billing`, {
      method: 'POST',
      headers: { 'Idempotency-Key': key },
      json: { user_id: user, number_of_items: 2, total_amount: '10.50' },
    });
    expect(reply.status, `order ${key}`).to.equal(202);
  }
}

const stored = (keys: string[]) =>
  eventually(
    () => (orderCounts(psqlBilling, keys).every((count) => count === 1) ? true : undefined),
    30_000,
    `orders ${keys.join(', ')} stored once each`,
  );

describe('make backup and make restore', () => {
  after(startBillingConsumer);

  it(
    'When data is backed up, ' +
      'then lost and changed, then the restore brings every movie and order back row for row, and ' +
      'keeps the orders queued at backup time',
    async function () {
      this.timeout(180_000);
      const user = unique('usr_backup');
      const backedUp = [unique('backup'), unique('backup'), unique('backup')];
      const queued = [unique('queued'), unique('queued')];
      const movies = [await postMovie(unique('backup')), await postMovie(unique('backup'))];
      await postOrders(user, backedUp);
      await stored(backedUp);

      // Two orders wait in billing_queue while the backup is taken: billing_db does not have them yet.
      onHost('billing', 'pm2', ['stop', 'billing-consumer']);
      await postOrders(user, queued);
      const moviesAtBackup = movieRows();
      const said = make('backup');
      const folder = /make restore BACKUP=(\S+)/.exec(said)?.[1];
      expect(folder, `make backup said:\n${said}`).to.be.a('string');
      const path = join(checkout, folder!);
      expect(readdirSync(path).sort()).to.deep.equal([
        'billing_db.dump',
        'movies_db.dump',
        'rabbitmq-definitions.json',
      ]);
      expect(statSync(path).mode & 0o777, 'the folder holds password hashes: only its owner reads it').to.equal(0o700);
      expect(orderCounts(psqlBilling, queued), 'the queued orders, at backup time').to.deep.equal([0, 0]);

      await startBillingConsumer();
      await stored(queued);
      const ordersStoredSince = orderRows();

      // The damage: movies deleted, changed and added; the backed-up orders lost.
      expect((await request(`${gateway}/api/movies/${movies[0]}`, { method: 'DELETE' })).status).to.equal(204);
      expect(
        (
          await request(`${gateway}/api/movies/${movies[1]}`, {
            method: 'PUT',
            json: { title: 'changed', description: '' },
          })
        ).status,
      ).to.equal(200);
      const added = await postMovie(unique('after-backup'));
      psqlBilling(
        `DELETE FROM orders WHERE user_id = '${user}' AND message_id IN ` +
          `(${backedUp.map((key) => `'${key}'`).join(',')})`,
      );
      expect(orderCounts(psqlBilling, backedUp)).to.deep.equal([0, 0, 0]);

      make('restore', `BACKUP=${folder}`);

      expect(movieRows(), 'movies_db: as at the backup').to.equal(moviesAtBackup);
      expect(orderRows(), 'billing_db: the backup, and the orders stored since').to.equal(ordersStoredSince);
      expect(orderCounts(psqlBilling, [...backedUp, ...queued])).to.deep.equal([1, 1, 1, 1, 1]);

      // After it the services work on: no movie id comes again, and RabbitMQ's users kept their passwords.
      expect(await postMovie(unique('after-restore')), 'a new movie id').to.be.above(added);
      const afterRestore = [unique('after-restore')];
      await postOrders(user, afterRestore);
      await stored(afterRestore);
    },
  );

  it(
    'When the daily backup job runs on each database host, as its timer or cron would, ' +
      "then a dated folder holds that host's parts, and those older than BACKUP_KEEP_DAYS go",
    function () {
      this.timeout(60_000);
      const keep = Number(process.env.BACKUP_KEEP_DAYS);
      expect(keep, 'BACKUP_KEEP_DAYS of .env').to.be.above(0);
      // The job's own command: systemd's unit, or the cron line's.
      const runJob = `set -e
      dir=/var/backups/crud-master
      mkdir -p "$dir/old" "$dir/recent"
      touch -d "-$(($1 + 1)) days" "$dir/old"
      touch -d "-$(($1 - 1)) days" "$dir/recent"
      if [ -d /run/systemd/system ]; then systemctl start crud-master-backup.service
      else sh -c "$(sed -n 's/^[^#]* root //p' /etc/cron.d/crud-master-backup)"; fi
      stat -c '%a' "$dir"
      for f in "$dir"/*; do [ -e "$f" ] && echo "\${f#"$dir"/}"; done
      ls "$(ls -d "$dir"/20* | sort | tail -n 1)"
      rmdir "$dir/recent"`;
      const parts = {
        inventory: ['movies_db.dump'],
        billing: ['billing_db.dump', 'rabbitmq-definitions.json'],
      } as const;
      for (const { host, apps } of hostsWithApps().filter(({ apps }) => apps.some((app) => app !== 'api-gateway'))) {
        const [mode, ...names] = onHost(host, 'sh', ['-c', runJob, 'sh', String(keep)])
          .trim()
          .split('\n');
        const expected = apps.flatMap((app) =>
          app === 'inventory-api' ? parts.inventory : app === 'billing-consumer' ? parts.billing : [],
        );
        expect(mode, `${host}: the folder's mode`).to.equal('700');
        expect(names, `${host}: the folder older than ${keep} days is gone, the younger one kept`)
          .to.include('recent')
          .and.not.include('old');
        expect(names.slice(-expected.length).sort(), `${host}: the newest backup`).to.deep.equal([...expected].sort());
      }
    },
  );

  it('When make restore names no backup, then it says how to name one and changes nothing', () => {
    let failure: { status?: number; stderr?: string } = {};
    try {
      execFileSync('make', ['--no-print-directory', 'restore'], { cwd: checkout, encoding: 'utf8', stdio: 'pipe' });
    } catch (error) {
      failure = error as typeof failure;
    }
    expect(failure.status, 'make restore without BACKUP').to.not.equal(undefined).and.not.equal(0);
    expect(failure.stderr).to.include('make restore BACKUP=backups/');
  });
});
