import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import '../support/env.js';
import { pm2Processes } from '../support/pm2.js';

/** Security promises of the deployed stack (make local), checked the way an auditor would. */
const env = process.env;
const repo = fileURLToPath(new URL('../..', import.meta.url));
const ENV_DIR = env.CRUD_MASTER_ENV_DIR ?? '/etc/crud-master';

describe('security of the deployed stack', () => {
  for (const [user, database] of [
    [env.INVENTORY_DB_USER, env.INVENTORY_DB_NAME],
    [env.BILLING_DB_USER, env.BILLING_DB_NAME],
  ] as const) {
    it(`When ${user} connects over TCP without a password, then PostgreSQL refuses`, () => {
      const attempt = spawnSync('psql', ['-h', '127.0.0.1', '-U', user!, '-d', database!, '-w', '-tAc', 'SELECT 1'], {
        encoding: 'utf8',
        env: { PATH: env.PATH, PGPASSWORD: '', PGCONNECT_TIMEOUT: '5' },
      });
      expect(attempt.status, attempt.stdout).to.not.equal(0);
      expect(attempt.stderr).to.match(/password|authentication/i);
    });

    it(`When ${user} connects over TCP with a wrong password, then PostgreSQL refuses`, () => {
      const attempt = spawnSync('psql', ['-h', '127.0.0.1', '-U', user!, '-d', database!, '-w', '-tAc', 'SELECT 1'], {
        encoding: 'utf8',
        env: { PATH: env.PATH, PGPASSWORD: 'not-the-password', PGCONNECT_TIMEOUT: '5' },
      });
      expect(attempt.status).to.not.equal(0);
      expect(attempt.stderr).to.match(/password authentication failed/);
    });
  }

  it('When the env files are listed, then each is mode 0600 and the folder is closed to others', () => {
    const files = readdirSync(ENV_DIR).filter((name) => name.endsWith('.env'));
    expect(files).to.have.members(['api-gateway.env', 'inventory-api.env', 'billing-consumer.env']);
    for (const file of files) expect((statSync(`${ENV_DIR}/${file}`).mode & 0o777).toString(8), file).to.equal('600');
    expect(statSync(ENV_DIR).mode & 0o007, 'others may not list the folder').to.equal(0);
  });

  it('When the tracked files are searched for the .env secrets, then none holds one', () => {
    const secrets = Object.entries(env)
      .filter(([name, value]) => name.endsWith('_PASSWORD') && value && value.length >= 8)
      .map(([, value]) => value!);
    expect(secrets, 'the .env passwords to look for').to.have.length.of.at.least(3);
    const hits = spawnSync('git', ['grep', '-l', '-F', ...secrets.flatMap((s) => ['-e', s])], { cwd: repo, encoding: 'utf8' });
    expect(hits.stdout.trim(), 'tracked files that hold a secret').to.equal('');
  });

  it('When the services run, then they run as an unprivileged user where the platform allows it', () => {
    const users = new Set(pm2Processes().map((p) => execFileSync('ps', ['-o', 'user=', '-p', String(p.pid)], { encoding: 'utf8' }).trim()));
    expect(users.size, 'one service user').to.equal(1);
    expect([...users][0]).to.not.equal('root');
  });
});
