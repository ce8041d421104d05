import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';

/**
 * Nothing that root reads, runs, chowns or writes while provisioning may be writable by the service
 * user or the build user. As each of them, a link is planted at every path it can write under the deploy, state and
 * build folders (each entry of each folder it can write is set aside and replaced by a link to a root-owned canary
 * folder or file, plus the names of the deploy state such as `.deploy`); then the host is provisioned
 * (ansible/local.sh, as `make local`), and no file outside those folders may have changed owner or mode, and the
 * canaries not at all. Then everything is put back and provisioned again.
 * This host only (make test runs it after the end-to-end suite): it provisions the host twice (~4 min).
 */
const repo = fileURLToPath(new URL('../..', import.meta.url));
const USERS = ['crud-master', 'crud-master-build'];
/** The folders of the deployment: the release, root's state, the env files, the PM2 home, the build folder. */
const ROOTS = [
  '/opt/crud-master',
  '/var/lib/crud-master-deploy',
  '/etc/crud-master',
  '/var/lib/crud-master',
  '/var/lib/crud-master-build',
];
/** Where "outside" is looked at: what root owns on the system (not /tmp, /var/tmp, /work: the other users' scratch). */
const OUTSIDE = ['/etc', '/usr', '/opt', '/var/lib', '/root', '/srv', '/home', '/boot'];
/** Names that a deploy role might create in a folder: planted where missing. */
const STATE_NAMES = ['.deploy', 'build-id', 'source', 'unpacked', 'dump.pm2'];
/** Entries of the live PM2 daemon that are left alone: its home (moved, the daemon would keep listening in it while
 * every pm2 command starts a second one), its sockets and its PID. Links are planted inside the home all the same. */
const LIVE = new Set(['.pm2', 'rpc.sock', 'pub.sock', 'pm2.pid']);
const ASIDE = '.planted-aside';

const run = (file: string, args: string[]) => execFileSync(file, args, { encoding: 'utf8', maxBuffer: 1 << 28 });
/** `make local`'s provisioning (ansible/local.sh) with more ansible-playbook arguments: exit code and output's end. */
function provision(...ansibleArgs: string[]): { status: number | null; tail: string } {
  const result = spawnSync(`${repo}ansible/local.sh`, ansibleArgs, { cwd: repo, encoding: 'utf8', maxBuffer: 1 << 28 });
  return { status: result.status, tail: `${result.stdout}${result.stderr}`.split('\n').slice(-14).join('\n') };
}
/** Undoes one plant: the link goes, the entry set aside comes back. */
const unplant = ({ user, path }: { user: string; path: string }) =>
  spawnSync('runuser', [
    '-u',
    user,
    '--',
    'sh',
    '-c',
    'rm -f -- "$1"; if [ -e "$1$2" ] || [ -L "$1$2" ]; then mv -T -- "$1$2" "$1"; fi',
    'sh',
    path,
    ASIDE,
  ]);

/** `owner:group:mode path` of everything outside the deployment's folders. */
function snapshot(): Map<string, string> {
  const prune = ROOTS.flatMap((root) => ['-path', root, '-o']).concat(['-path', '/var/lib/crud-master-deploy']);
  const out = spawnSync(
    'find',
    [...OUTSIDE, '-xdev', '(', ...prune, ')', '-prune', '-o', '-printf', '%u:%g:%m %p\\n'],
    {
      encoding: 'utf8',
      maxBuffer: 1 << 28,
    },
  ).stdout;
  return new Map(
    out
      .split('\n')
      .filter(Boolean)
      .map((line) => [line.slice(line.indexOf(' ') + 1), line.slice(0, line.indexOf(' '))]),
  );
}

/** The folders under ROOTS that `user` can write, deepest first (node_modules and caches as one entry each). */
function writableFolders(user: string): string[] {
  const found = spawnSync(
    'runuser',
    [
      '-u',
      user,
      '--',
      'find',
      ...ROOTS,
      '(',
      '-name',
      'node_modules',
      '-o',
      '-name',
      '.npm',
      ')',
      '-prune',
      '-o',
      '-type',
      'd',
      '-writable',
      '-print',
    ],
    {
      encoding: 'utf8',
      maxBuffer: 1 << 28,
    },
  ).stdout;
  return found
    .split('\n')
    .filter(Boolean)
    .sort((a, b) => b.split('/').length - a.split('/').length);
}

describe(
  'privileges of the deployment (a re-provisioning with links planted by the service and build ' + 'users)',
  function () {
    this.timeout(900_000);
    const canaryDir = mkdtempSync('/usr/local/lib/crud-master-canary-');
    const canaryFile = `${canaryDir}/canary`;
    // Each plant: `<user> <path>`, in the order planted; undone in reverse.
    const planted: Array<{ user: string; path: string }> = [];
    let outsideBefore: Map<string, string>;
    let attacks: Array<{ status: number | null; tail: string }>;

    before(() => {
      chmodSync(canaryDir, 0o755);
      writeFileSync(canaryFile, 'canary\n', { mode: 0o644 });
      outsideBefore = snapshot();
      for (const user of USERS) {
        for (const folder of writableFolders(user)) {
          const names = run('ls', ['-A', folder])
            .split('\n')
            .filter((name) => name && !LIVE.has(name) && !name.endsWith(ASIDE));
          for (const name of [...new Set([...names, ...STATE_NAMES])]) {
            const path = `${folder}/${name}`;
            const exists = names.includes(name);
            const isDir = exists && statSync(path, { throwIfNoEntry: false })?.isDirectory();
            const target =
              isDir || name === '.deploy' || name === 'source' || name === 'unpacked' ? canaryDir : canaryFile;
            const script = exists ? 'mv -T -- "$1" "$1$2" && ln -sT -- "$3" "$1"' : 'ln -sT -- "$3" "$1"';
            if (spawnSync('runuser', ['-u', user, '--', 'sh', '-c', script, 'sh', path, ASIDE, target]).status === 0)
              planted.push({ user, path });
          }
        }
      }
      // The whole play, then the deploy alone: a role that stops on a planted link (which is fine) must not hide
      // what the later roles would do.
      attacks = [provision(), provision('--tags', 'deploy')];
      console.log(
        `      provisioning runs with the links in place: ${planted.length} links, exit codes ` +
          `${attacks.map((a) => a.status).join(', ')}`,
      );
    });

    after(() => {
      planted.reverse().forEach(unplant);
      rmSync(canaryDir, { recursive: true, force: true });
    });

    it('When links are planted, then each user has planted some (the test reaches the folders)', () => {
      const byUser = USERS.map((user) => planted.filter((p) => p.user === user).length);
      expect(byUser, `links planted by ${USERS.join(', ')}`).to.satisfy((counts: number[]) =>
        counts.every((n) => n > 0),
      );
    });

    it(
      'When the host is provisioned with the links in place, ' +
        'then no file outside the deployment changed owner or mode',
      () => {
        const outsideAfter = snapshot();
        const changed = [...outsideBefore]
          .filter(([path, meta]) => outsideAfter.has(path) && outsideAfter.get(path) !== meta)
          .map(([path, meta]) => `${path}: ${meta} -> ${outsideAfter.get(path)}`);
        const runs = attacks.map((attack) => `exit ${attack.status}:\n${attack.tail}`).join('\n');
        expect(changed, `changed by the provisioning runs (${runs})`).to.deep.equal([]);
      },
    );

    it('When the host is provisioned with the links in place, then the canaries are untouched', () => {
      expect(run('stat', ['-c', '%u:%g:%a', canaryDir, canaryFile]).trim().split('\n')).to.deep.equal([
        '0:0:755',
        '0:0:644',
      ]);
      expect(readFileSync(canaryFile, 'utf8')).to.equal('canary\n');
      expect(run('ls', ['-A', canaryDir]).trim()).to.equal('canary');
    });

    it('When the links are removed again, then the host provisions cleanly', () => {
      planted.reverse().forEach(unplant);
      planted.length = 0;
      const healed = provision();
      expect(healed.status, healed.tail).to.equal(0);
    });
  },
);
