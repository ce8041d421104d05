import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import '@crud-master/test-support/env';
import { hostsWithApps, onHost, psqlAsOnHost } from '@crud-master/test-support/hosts';
import { pm2ProcessesOn } from '@crud-master/test-support/pm2';
import { expect } from 'chai';

/**
 * Security promises of the deployed stack (make local), checked the way an auditor would: on each service's host
 * (this one, or through E2E_*_EXEC in the Vagrant stage, see tests/support/hosts.ts).
 */
const env = process.env;
const repo = fileURLToPath(new URL('../..', import.meta.url));
const ENV_DIR = env.CRUD_MASTER_ENV_DIR ?? '/etc/crud-master';

describe('security of the deployed stack', () => {
  for (const [user, database, host] of [
    [env.INVENTORY_DB_USER, env.INVENTORY_DB_NAME, 'inventory'],
    [env.BILLING_DB_USER, env.BILLING_DB_NAME, 'billing'],
  ] as const) {
    /** psql over TCP on the database's own host, with `password`. */
    const psqlWith = (password: string) =>
      psqlAsOnHost(host, { user: user!, password, database: database! }, 'SELECT 1');

    it(`When ${user} connects over TCP without a password, then PostgreSQL refuses`, () => {
      const attempt = psqlWith('');
      expect(attempt.status, attempt.stdout).to.not.equal(0);
      expect(attempt.stderr).to.match(/password|authentication/i);
    });

    it(`When ${user} connects over TCP with a wrong password, then PostgreSQL refuses`, () => {
      const attempt = psqlWith('not-the-password');
      expect(attempt.status).to.not.equal(0);
      expect(attempt.stderr).to.match(/password authentication failed/);
    });
  }

  it(
    'When the env files are listed, ' +
      'then each is root:crud-master 0640 and the folder root:crud-master, closed to others',
    () => {
      for (const { host, apps } of hostsWithApps()) {
        // `<mode in octal> <owner>:<group> <path>` of the folder, then of each file in it (a host has the env files of
        // its own apps only).
        const [folder, ...files] = onHost(host, 'sh', ['-c', 'cd "$1" && stat -c "%a %U:%G %n" . *.env', 'sh', ENV_DIR])
          .trim()
          .split('\n');
        const modes = Object.fromEntries(
          files.map((line) => line.split(' ')).map(([mode, owner, file]) => [file!, `${mode} ${owner}`]),
        );
        expect(Object.keys(modes), `the env files on the ${host} host`).to.have.members(
          apps.map((app) => `${app}.env`),
        );
        for (const [file, mode] of Object.entries(modes))
          expect(mode, `${file} on the ${host} host`).to.equal('640 root:crud-master');
        const [folderMode, folderOwner] = folder!.split(' ');
        expect(
          folderOwner,
          `the owner of ${ENV_DIR} on the ${host} host: the service user may not plant a link there`,
        ).to.equal('root:crud-master');
        expect(
          Number.parseInt(folderMode!, 8) & 0o027,
          `others may not list ${ENV_DIR}, nor the group write it, on the ${host} host`,
        ).to.equal(0);
      }
    },
  );

  it('When the tracked files are searched for the .env secrets, then none holds one', function () {
    // the topology test runs this suite from a copy of the checkout, without its git history
    if (spawnSync('git', ['rev-parse', '--git-dir'], { cwd: repo }).status !== 0) this.skip();
    const secrets = Object.entries(env)
      .filter(([name, value]) => /_(PASSWORD|COOKIE)$/.test(name) && value && value.length >= 8)
      .map(([, value]) => value!);
    expect(secrets, 'the .env passwords and cookie to look for').to.have.length.of.at.least(3);
    const hits = spawnSync('git', ['grep', '-l', '-F', ...secrets.flatMap((s) => ['-e', s])], {
      cwd: repo,
      encoding: 'utf8',
    });
    expect(hits.stdout.trim(), 'tracked files that hold a secret').to.equal('');
    expect(hits.status, 'git grep found nothing (1), rather than failing').to.equal(1);
  });

  it('When the services run, then they run as an unprivileged user where the platform allows it', () => {
    for (const { host } of hostsWithApps()) {
      const processes = pm2ProcessesOn(host);
      const users = new Set(processes.map((p) => onHost(host, 'ps', ['-o', 'user=', '-p', String(p.pid)]).trim()));
      expect(users.size, `one service user on the ${host} host`).to.equal(1);
      expect([...users][0], `the service user on the ${host} host`).to.not.equal('root');
    }
  });
});
