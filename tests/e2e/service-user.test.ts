import { hostsWithApps, onHost, spawnOnHost, type Host } from '@crud-master/test-support/hosts';
import { eventually } from '@crud-master/test-support/http';
import { pm2ProcessesOn } from '@crud-master/test-support/pm2';
import { unique } from '@crud-master/test-support/env';
import { stack } from '@crud-master/test-support/stack';
import { expect } from 'chai';

/**
 * The service user and its PM2 daemon on each service's host (this one, or over SSH in the Vagrant stage, see
 * tests/support/hosts.ts): who runs the apps, what `sudo pm2 startup` registers, and the PM2 logs.
 */
const SERVICE_USER = 'crud-master';
const SERVICE_HOME = '/var/lib/crud-master';
const PM2_HOME = `${SERVICE_HOME}/.pm2`;
const UNIT = `/etc/systemd/system/pm2-${SERVICE_USER}.service`;
const { gateway } = stack;

const sh = (host: Host, script: string, ...args: string[]) => onHost(host, 'sh', ['-c', script, 'sh', ...args]);
/** The PID of the PM2 daemon of a host. */
const daemonPid = (host: Host) => sh(host, 'cat "$1"', `${PM2_HOME}/pm2.pid`).trim();
/**
 * `<mode in octal> <path>` of every PM2 log of a host (the apps', the daemon's, the rotated ones). logrotate deletes
 * the oldest rotated file as it adds one: a file gone between find's listing and its stat is no error.
 */
const logModes = (host: Host) =>
  sh(host, 'find "$1" -xdev -ignore_readdir_race -type f -name "*.log*" -printf "%m %p\\n"', PM2_HOME)
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => ({ mode: Number.parseInt(line.split(' ')[0]!, 8), path: line.slice(line.indexOf(' ') + 1) }));

describe('the service user and its PM2 daemon', () => {
  it(`When the apps run, then every process of theirs and the PM2 daemon run as ${SERVICE_USER}`, () => {
    for (const { host } of hostsWithApps()) {
      const processes = pm2ProcessesOn(host);
      const pids = [daemonPid(host), ...processes.filter((p) => p.pid > 0).map((p) => String(p.pid))];
      const users = onHost(host, 'ps', ['-o', 'user:32=', '-p', pids.join(',')])
        .trim()
        .split(/\s+/);
      expect(users, `the users of the PM2 daemon and apps on the ${host} host`).to.have.length(pids.length);
      expect(new Set(users), `the users of the PM2 daemon and apps on the ${host} host`).to.deep.equal(
        new Set([SERVICE_USER]),
      );
    }
  });

  it(`When sudo is asked what ${SERVICE_USER} may run, then nothing, and it has no login shell`, () => {
    for (const { host } of hostsWithApps()) {
      const rights = spawnOnHost(host, 'sudo', ['-n', '-l', '-U', SERVICE_USER]);
      expect(`${rights.stdout}${rights.stderr}`, `sudo -l -U ${SERVICE_USER} on the ${host} host`).to.match(
        /is not allowed to run sudo/,
      );
      const account = onHost(host, 'getent', ['passwd', SERVICE_USER]).trim().split(':');
      expect(account[6], `the shell of ${SERVICE_USER} on the ${host} host`).to.equal('/usr/sbin/nologin');
      expect(
        onHost(host, 'id', ['-Gn', SERVICE_USER]).trim(),
        `the groups of ${SERVICE_USER} on the ${host} host`,
      ).to.equal(SERVICE_USER);
    }
  });

  it(
    `When root runs pm2 startup for another user, ` +
      `then the unit still runs PM2 as ${SERVICE_USER} with its PM2_HOME`,
    () => {
      for (const { host } of hostsWithApps()) {
        // A host without systemd has no unit yet: the test removes what it writes (systemctl may fail there after
        // pm2 has written the unit; its exit code is not the point).
        const had = sh(
          host,
          'for f in "$@"; do [ -e "$f" ] && echo "$f"; done; true',
          UNIT,
          '/etc/systemd/system/pm2-root.service',
        ).trim();
        try {
          spawnOnHost(host, 'pm2', ['startup', 'systemd', '-u', 'root', '--hp', '/root']);
          const unit = sh(host, 'cat "$1"', UNIT);
          expect(unit, `${UNIT} on the ${host} host`).to.match(new RegExp(`^User=${SERVICE_USER}$`, 'm'));
          expect(unit, `${UNIT} on the ${host} host`).to.match(new RegExp(`^Environment=PM2_HOME=${PM2_HOME}$`, 'm'));
          const units = sh(host, 'ls -d /etc/systemd/system/pm2-*.service').trim().split('\n');
          expect(units, `the PM2 units on the ${host} host`).to.deep.equal([UNIT]);
        } finally {
          if (!had.includes('pm2-root'))
            sh(
              host,
              'rm -f /etc/systemd/system/pm2-root.service /etc/systemd/system/multi-user.target.wants/pm2-root.service',
            );
          if (!had.includes(UNIT))
            sh(host, 'rm -f "$1" "/etc/systemd/system/multi-user.target.wants/$(basename "$1")"', UNIT);
        }
      }
    },
  );

  it('When the PM2 daemon writes logs, then it runs with umask 0027 and no log is readable by others', () => {
    for (const { host } of hostsWithApps()) {
      const umask = sh(host, 'sed -n "s/^Umask:[[:space:]]*//p" "/proc/$1/status"', daemonPid(host)).trim();
      expect(umask, `the umask of the PM2 daemon on the ${host} host`).to.equal('0027');
      const logs = logModes(host);
      expect(
        logs.map((log) => log.path),
        `the PM2 logs on the ${host} host`,
      ).to.include(`${PM2_HOME}/pm2.log`);
      const open = logs.filter((log) => (log.mode & 0o007) !== 0).map((log) => `${log.path} (${log.mode.toString(8)})`);
      expect(open, `PM2 logs that others may read on the ${host} host`).to.deep.equal([]);
    }
  });

  it(`When PM2 runs the apps, then ${SERVICE_USER} can write none of the code it runs, and it runs no module`, () => {
    for (const { host } of hostsWithApps()) {
      const processes = pm2ProcessesOn(host);
      expect(
        processes.filter((p) => p.module).map((p) => p.name),
        `PM2 modules on the ${host} host`,
      ).to.deep.equal([]);
      // each script, PM2 and node, and every folder above them: one writable by the service user lets it swap the code
      const runtime = sh(host, 'readlink -f "$(command -v node)" /opt/pm2/bin/pm2').trim().split('\n');
      const code = [...new Set([...processes.map((p) => p.script), ...runtime])];
      const paths = [
        ...new Set(
          code.flatMap((file) => file.split('/').map((_, i, parts) => parts.slice(0, i + 1).join('/') || '/')),
        ),
      ];
      const writable = onHost(host, 'runuser', [
        '-u',
        SERVICE_USER,
        '--',
        'sh',
        '-c',
        'for p; do [ -w "$p" ] && echo "$p"; done; true',
        'sh',
        ...paths,
      ]);
      expect(
        writable.trim().split('\n').filter(Boolean),
        `code or its folders that ${SERVICE_USER} may write on the ${host} host`,
      ).to.deep.equal([]);
    }
  });

  describe('log rotation by logrotate(8)', () => {
    const host: Host = 'gateway';
    const LOG = `${PM2_HOME}/logs/api-gateway-out.log`;
    const KEPT = 14;
    const CAP = 10 * 1024 * 1024;
    const asServiceUser = (script: string, ...args: string[]) =>
      onHost(host, 'runuser', ['-u', SERVICE_USER, '--', 'sh', '-c', `umask 0027; ${script}`, 'sh', ...args]);
    const firstLine = (n: number) => sh(host, 'gzip -dc "$1" | head -n 1', `${LOG}.${n}.gz`).trim();

    it(
      `When api-gateway's log passes 10 MB, ` +
        `then within a minute it is rotated: compressed, ${KEPT} kept, closed to others, and the app ` +
        `writes on`,
      async function () {
        this.timeout(150_000);
        // The rotated files a real rotation would shift: those missing are seeded, so that the oldest one is dropped.
        asServiceUser(
          'for n in $(seq 1 "$2"); do [ -e "$1.$n.gz" ] || echo "seeded $n" | gzip > "$1.$n.gz"; done',
          LOG,
          String(KEPT),
        );
        const secondOldest = firstLine(KEPT - 1);
        const marker = unique('rotation-marker');
        asServiceUser(
          `printf '%s\\n' "$2" >> "$1"; yes '{"padding":true}' | head -c "$3" >> "$1"`,
          LOG,
          marker,
          String(CAP + 65536),
        );

        // The root-owned timer (cron where systemd does not run) checks every minute. logrotate copies the log to
        // .1, truncates it, compresses .1 into .1.gz, then removes .1: done when the log is small and .1 is gone.
        const rotatedYet = 'test "$(stat -c %s "$1")" -lt "$2" && ! test -e "$1.1" && echo done || true';
        await eventually(
          () => (sh(host, rotatedYet, LOG, String(CAP)).trim() === 'done' ? true : undefined),
          100_000,
          `${LOG} rotated`,
        );
        expect(
          sh(host, 'gzip -dc "$1" | grep -c -F -e "$2"', `${LOG}.1.gz`, marker).trim(),
          `${LOG}.1.gz holds the marker`,
        ).to.equal('1');
        expect(firstLine(KEPT), `the oldest kept is the one that was second oldest`).to.equal(secondOldest);
        expect(
          sh(host, '[ -e "$1" ] && echo kept || echo dropped', `${LOG}.${KEPT + 1}.gz`).trim(),
          `only ${KEPT} kept`,
        ).to.equal('dropped');
        for (const log of logModes(host))
          expect(log.mode & 0o007, `${log.path} (${log.mode.toString(8)}) is not readable by others`).to.equal(0);

        // copytruncate: the app's open file goes on from its start (no hole of NUL bytes where the old end was)
        const size = Number(sh(host, 'stat -c %s "$1"', LOG));
        await eventually(
          async () => {
            await fetch(`${gateway}/api/movies?limit=1`).then((r) => r.arrayBuffer());
            return Number(sh(host, 'stat -c %s "$1"', LOG)) > size ? true : undefined;
          },
          20_000,
          `api-gateway to write on into ${LOG}`,
        );
        expect(sh(host, 'head -c 1 "$1" | od -An -c', LOG).trim(), `the first byte of ${LOG}`).to.not.equal('\\0');
      },
    );
  });
});
