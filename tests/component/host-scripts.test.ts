import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { namedValues } from '@crud-master/test-support/env';
import { copyForVagrantfile, loadVagrantfile, vagrantVms } from '@crud-master/test-support/vagrantfile';

/**
 * What runs on a newcomer's host (make .env and its reader of .env, make inventory's and make up's recipes) is POSIX
 * sh: macOS has bash 3.2. Here, in a copy of the checkout, with /bin/sh as Debian's dash and no bash on PATH; and the
 * scripts under dash and posh (Debian's policy-compliant shell, which refuses what POSIX does not have) alike.
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

  before(() => {
    for (const shell of ['dash', 'posh']) {
      if (spawnSync('sh', ['-c', `command -v ${shell}`]).status !== 0)
        throw new Error(`${shell} is missing: make deps-lint installs it`);
    }
    expect(path.basename(realpathSync('/bin/sh')), '/bin/sh').to.equal('dash');
    work = mkdtempSync(path.join(tmpdir(), 'crud-master-host-'));
    checkout = path.join(work, 'checkout');
    cpSync(path.join(repo, 'Makefile'), path.join(checkout, 'Makefile'));
    copyForVagrantfile(checkout);
    const bin = path.join(work, 'bin');
    execFileSync(path.join(repo, 'tests/support/no-bash-path.sh'), [bin]);
    noBash = { PATH: bin, HOME: work, LANG: 'C' };
  });

  after(() => rmSync(work, { recursive: true, force: true }));

  /** A copy of the checkout for the Vagrantfile alone. */
  let vagrantCheckout: string;
  before(() => {
    vagrantCheckout = copyForVagrantfile(path.join(work, 'vagrant-checkout'));
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
      const vagrant = loadVagrantfile(vagrantCheckout, ['status']);
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
      const vagrant = loadVagrantfile(vagrantCheckout, ['up', '--provider=docker']);
      expect(vagrant.status, vagrant.out).to.equal(0);
      const listed = execFileSync('tar', ['-tzf', path.join(vagrantCheckout, '.vagrant/provision/checkout.tar.gz')], {
        encoding: 'utf8',
      })
        .split('\n')
        .filter((entry) => !entry.endsWith('/') && entry !== '');
      expect(listed).to.include.members([...kept, 'Vagrantfile', '.env.example', 'ansible/group_vars/all/env.yml']);
      expect(listed.filter((entry) => [...planted, '.env'].includes(entry))).to.deep.equal([]);
    },
  );

  it(
    'When .env sets BILLING_VM_COUNT=3 and lacks some, ' +
      'then `make inventory` adds them, and Vagrant writes 3 billing VMs in .vagrant/',
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
      const billing = vagrantVms(checkout).filter((vm) => vm.group === 'billing');
      expect(billing.map((vm) => vm.name)).to.deep.equal(['billing-vm', 'billing-vm-2', 'billing-vm-3']);
      const written = statSync(path.join(checkout, '.vagrant/inventory.json')).mtimeMs;
      expect(run('make', ['inventory']).out, 'a second run').to.equal('');
      expect(statSync(path.join(checkout, '.vagrant/inventory.json')).mtimeMs, 'rewritten').to.equal(written);
    },
  );

  it('When `make up` is planned (make -n), then the billing VMs and inventory-vm come up before the rest', () => {
    const planned = run('make', ['-n', 'up', 'PROVIDER=virtualbox']);
    expect(planned.status, planned.out).to.equal(0);
    expect(planned.out).to.include("vagrant up --provider=virtualbox '/^billing-vm/' inventory-vm\n");
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
        const read = run(shell, ['-c', '. ansible/dotenv.sh && dotenv_pairs "$1"', shell, sample]);
        expect(read.status, read.out).to.equal(0);
        expect(read.out.split('\n')).to.deep.equal(['A=last', 'B=x', 'C=a=b', 'BILLING_VM_COUNT=2', 'D="', '']);

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
