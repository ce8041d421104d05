import '@crud-master/test-support/env';
import { hostPrefix, onHost, psqlAsOnHost, type Host } from '@crud-master/test-support/hosts';
import { expect } from 'chai';

/**
 * Each service's PostgreSQL role reaches its own database only: pg_hba.conf has no rule for all
 * databases or all users over TCP, PUBLIC may not connect to either database, and on one host (one cluster for both)
 * inventory_user cannot log in to billing_db nor billing_user to movies_db.
 */
const env = process.env;
const [inventoryDb, billingDb] = [
  {
    host: 'inventory' as Host,
    name: env.INVENTORY_DB_NAME!,
    owner: env.INVENTORY_DB_USER!,
    password: env.INVENTORY_DB_PASSWORD!,
  },
  {
    host: 'billing' as Host,
    name: env.BILLING_DB_NAME!,
    owner: env.BILLING_DB_USER!,
    password: env.BILLING_DB_PASSWORD!,
  },
] as const;
const databases = [inventoryDb, billingDb];
const sameCluster = hostPrefix('inventory').join(' ') === hostPrefix('billing').join(' ');

/** A query as the postgres superuser on a host (peer authentication). */
const asPostgres = (host: Host, database: string, query: string) =>
  onHost(host, 'sudo', ['-u', 'postgres', 'psql', '-d', database, '-XtAc', query]).trim();

describe('database access of the deployed stack', () => {
  for (const { host, name } of databases) {
    it(`When pg_hba.conf on the ${host} host is read, then no TCP rule is for all databases or all users`, () => {
      const rules = asPostgres(
        host,
        name,
        "SELECT line_number || ': ' || type || ' ' || array_to_string(database, ',') || ' ' || " +
          "array_to_string(user_name, ',') FROM pg_hba_file_rules " +
          "WHERE type LIKE 'host%' AND ('all' = ANY(database) OR 'all' = ANY(user_name))",
      );
      expect(rules, 'catch-all TCP rules').to.equal('');
      expect(
        asPostgres(host, name, 'SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL'),
        'rules PostgreSQL could not read',
      ).to.equal('0');
    });

    it(`When ${name}'s privileges are read, then PUBLIC may not connect to it nor create in its public schema`, () => {
      const rows = asPostgres(
        host,
        name,
        `SELECT has_database_privilege('public', '${name}', 'CONNECT'), has_schema_privilege('public', 'public', ` +
          `'CREATE')`,
      );
      expect(rows).to.equal('f|f');
    });
  }

  for (const [from, to] of [
    [inventoryDb, billingDb],
    [billingDb, inventoryDb],
  ] as const) {
    it(`When ${from.owner} logs in to ${to.name} with its own password over TCP, then PostgreSQL refuses`, function () {
      // on the VMs each database lives alone on its host: there is no other database to reach
      if (!sameCluster) this.skip();
      const attempt = psqlAsOnHost(
        to.host,
        { user: from.owner, password: from.password, database: to.name },
        'SELECT 1',
      );
      expect(attempt.status, attempt.stdout).to.not.equal(0);
      expect(attempt.stderr).to.match(/no pg_hba\.conf entry|permission denied for database/);
    });
  }
});
