import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { namedValues } from '@crud-master/test-support/env';

/**
 * What runs on a newcomer's host (make .env, make inventory, the Makefile's reader of .env) is POSIX sh: macOS has
 * bash 3.2. Here, in a copy of the checkout, with /bin/sh as Debian's dash and no bash on PATH; and the scripts under
 * dash and posh (Debian's policy-compliant shell, which refuses what POSIX does not have) alike.
 */
describe('the host-side scripts on a POSIX sh (no bash on PATH)', () => {
  const repo = fileURLToPath(new URL('../..', import.meta.url));
  let work: string;
  let checkout: string;
  let noBash: NodeJS.ProcessEnv;

  /** COMMAND… in the copy, with PATH holding every program of this host's but bash. */
  const run = (command: string, args: string[], env: NodeJS.ProcessEnv = {}) => {
    const result = spawnSync(command, args, { cwd: checkout, env: { ...noBash, ...env }, encoding: 'utf8' });
    return { status: result.status, out: `${result.stdout}${result.stderr}` };
  };
  /** A written .env's NAME=VALUE lines, as make-env.sh writes them (no quotes). */
  const envOf = (file: string) => namedValues(readFileSync(file, 'utf8'));
  /** The hosts of [billing] in the inventory FILE of the copy. */
  const billingHosts = (file: string) => {
    const lines = readFileSync(path.join(checkout, file), 'utf8').split('\n');
    const start = lines.indexOf('[billing]') + 1;
    return lines
      .slice(
        start,
        lines.findIndex((line, i) => i >= start && line.startsWith('[')),
      )
      .filter((line) => /^[^#;\s]/.test(line));
  };

  before(() => {
    for (const shell of ['dash', 'posh']) {
      if (spawnSync('sh', ['-c', `command -v ${shell}`]).status !== 0)
        throw new Error(`${shell} is missing: make deps-lint installs it`);
    }
    expect(path.basename(realpathSync('/bin/sh')), '/bin/sh').to.equal('dash');
    work = mkdtempSync(path.join(tmpdir(), 'crud-master-host-'));
    checkout = path.join(work, 'checkout');
    for (const entry of ['Makefile', '.env.example', 'inventory.ini', 'ansible'])
      cpSync(path.join(repo, entry), path.join(checkout, entry), { recursive: true });
    const bin = path.join(work, 'bin');
    execFileSync(path.join(repo, 'tests/support/no-bash-path.sh'), [bin]);
    noBash = { PATH: bin, HOME: work, LANG: 'C' };
  });

  after(() => rmSync(work, { recursive: true, force: true }));

  /**
   * The Vagrantfile of a copy of the checkout, loaded by Ruby with ARGS as vagrant's command line (Vagrant stubbed).
   */
  let vagrantCheckout: string;
  const loadVagrantfile = (args: string[]) => {
    const stub = 'module Vagrant; def self.configure(*) end; end; load "Vagrantfile"';
    const result = spawnSync('ruby', ['-e', stub, '--', ...args], { cwd: vagrantCheckout, encoding: 'utf8' });
    return { status: result.status, out: `${result.stdout}${result.stderr}` };
  };
  before(() => {
    vagrantCheckout = path.join(work, 'vagrant-checkout');
    for (const entry of ['Vagrantfile', '.env.example', '.gitignore', 'ansible']) {
      cpSync(path.join(repo, entry), path.join(vagrantCheckout, entry), { recursive: true });
    }
  });

  it('When the PATH is set up, then it has no bash but has make (the control)', () => {
    expect(run('sh', ['-c', 'command -v bash']).status, 'bash on PATH').to.not.equal(0);
    expect(run('sh', ['-c', 'command -v make']).status).to.equal(0);
  });

  /** FILE is .env.example's variables, private, and each of its empty secrets a random 32 hex digits. */
  const expectFreshEnv = (file: string) => {
    expect(statSync(file).mode & 0o777).to.equal(0o600);
    const env = envOf(file);
    const example = envOf(path.join(repo, '.env.example'));
    expect(Object.keys(env)).to.have.members(Object.keys(example));
    const secrets = Object.keys(example).filter((name) => /_(PASSWORD|COOKIE)$/.test(name) && example[name] === '');
    expect(secrets).to.not.be.empty;
    for (const name of Object.keys(example)) {
      if (secrets.includes(name)) expect(env[name], name).to.match(/^[0-9a-f]{32}$/);
      else expect(env[name], name).to.equal(example[name]);
    }
    expect(new Set(secrets.map((name) => env[name])).size, 'each secret its own').to.equal(secrets.length);
  };

  it('When `make .env` runs, then .env is made from .env.example, private, each secret a random 32 hex digits', () => {
    const made = run('make', ['.env']);
    expect(made.status, made.out).to.equal(0);
    expectFreshEnv(path.join(checkout, '.env'));
  });

  it(
    'When `vagrant up` runs with no .env (Windows has no make), ' + 'then the Vagrantfile makes it as `make .env` does',
    () => {
      const vagrant = loadVagrantfile(['status']);
      expect(vagrant.status, vagrant.out).to.equal(0);
      expect(vagrant.out).to.include('Made');
      expectFreshEnv(path.join(vagrantCheckout, '.env'));
    },
  );

  it(
    'When a command that provisions loads the Vagrantfile, ' +
      "then /vagrant's archive is the checkout without .git and what .gitignore names",
    () => {
      const planted = [
        'backups/2026/billing_db.dump',
        'node_modules/x/index.js',
        'services/a/dist/main.js',
        'services/a/b.tsbuildinfo',
        'bench/results.json',
        'bench/profiles/p.cpuprofile',
        '.test-results/r.json',
        'a.log',
        '.vagrant/machines/k',
        '.git/config',
      ];
      const kept = ['tests/bench/results.json', 'services/a/src/dist.ts', 'untracked.md'];
      for (const file of [...planted, ...kept]) {
        mkdirSync(path.dirname(path.join(vagrantCheckout, file)), { recursive: true });
        writeFileSync(path.join(vagrantCheckout, file), file);
      }
      const vagrant = loadVagrantfile(['up', '--provider=docker']);
      expect(vagrant.status, vagrant.out).to.equal(0);
      const listed = execFileSync('tar', ['-tzf', path.join(vagrantCheckout, '.vagrant/provision/checkout.tar.gz')], {
        encoding: 'utf8',
      })
        .split('\n')
        .filter((entry) => !entry.endsWith('/') && entry !== '');
      expect(listed).to.include.members([...kept, 'Vagrantfile', '.env.example', 'ansible/group_vars/all.yml']);
      expect(listed.filter((entry) => [...planted, '.env'].includes(entry))).to.deep.equal([]);
    },
  );

  it(
    'When .env sets BILLING_VM_COUNT=3 and lacks some, ' +
      'then `make inventory` adds them, writes 3 billing VMs in .vagrant/',
    () => {
      const file = path.join(checkout, '.env');
      const before = envOf(file);
      const kept = Object.entries(before).filter(([name]) => name !== 'LOG_LEVEL' && name !== 'BILLING_VM_COUNT');
      writeFileSync(
        file,
        `# mine\nexport BILLING_VM_COUNT="3"\n${kept.map(([name, value]) => `${name}=${value}`).join('\n')}\n`,
        { mode: 0o600 },
      );
      const made = run('make', ['inventory']);
      expect(made.status, made.out).to.equal(0);
      expect(made.out).to.include('Added to').and.include('LOG_LEVEL');
      const after = envOf(file);
      for (const [name, value] of kept) expect(after[name], name).to.equal(value);
      expect(billingHosts('.vagrant/inventory.ini')).to.deep.equal(['billing-vm', 'billing-vm-2', 'billing-vm-3']);
      expect(readFileSync(path.join(checkout, 'inventory.ini'), 'utf8'), 'the tracked inventory.ini').to.equal(
        readFileSync(path.join(repo, 'inventory.ini'), 'utf8'),
      );
      expect(run('make', ['inventory']).out, 'a second run').to.equal('');
    },
  );

  it("When `make up` is planned (make -n), then the Makefile's own reader of .env names the billing VMs", () => {
    const planned = run('make', ['-n', 'up', 'PROVIDER=virtualbox']);
    expect(planned.status, planned.out).to.equal(0);
    expect(planned.out).to.include(
      'vagrant up --provider=virtualbox billing-vm billing-vm-2 billing-vm-3 inventory-vm',
    );
  });

  for (const shell of ['dash', 'posh']) {
    it(
      `When ${shell} runs the .env reader and make-env.sh, ` + `then they read and write what the Vagrantfile reads`,
      () => {
        const sample = path.join(work, `${shell}.env`);
        writeFileSync(
          sample,
          [
            '# comment',
            '  export A="two words"  ',
            "B='x'",
            'C=a=b',
            'not a variable',
            'BILLING_VM_COUNT=2',
            'A=last\r',
            'D="',
          ].join('\n'),
        );
        const read = run(shell, [
          '-c',
          '. ansible/dotenv.sh && dotenv_pairs "$1" && billing_vm_names "$1" && dotenv_get "$1" C',
          shell,
          sample,
        ]);
        expect(read.status, read.out).to.equal(0);
        expect(read.out.split('\n')).to.deep.equal([
          'A=last',
          'B=x',
          'C=a=b',
          'BILLING_VM_COUNT=2',
          'D="',
          'billing-vm billing-vm-2',
          'a=b',
          '',
        ]);
        writeFileSync(sample, 'BILLING_VM_COUNT=02\n');
        const bad = run(shell, ['-c', '. ansible/dotenv.sh && billing_vm_names "$1"', shell, sample]);
        expect(bad.status, 'BILLING_VM_COUNT=02').to.not.equal(0);
        expect(bad.out).to.include('BILLING_VM_COUNT must be a whole number');

        const made = path.join(work, `${shell}-made.env`);
        const written = run(shell, ['ansible/make-env.sh', 'BILLING_VM_COUNT=4', 'RABBITMQ_USER=me'], {
          ENV_FILE: made,
        });
        expect(written.status, written.out).to.equal(0);
        expect(envOf(made)).to.include({ BILLING_VM_COUNT: '4', RABBITMQ_USER: 'me' });
        const again = run(shell, ['ansible/make-env.sh'], { ENV_FILE: made });
        expect(again, 'a .env that lacks nothing').to.deep.equal({ status: 0, out: '' });
        expect(run(shell, ['ansible/make-env.sh', 'not-a-name=1']).status, 'a bad argument').to.equal(2);
      },
    );
  }
});
