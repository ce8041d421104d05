import { hostsWithApps, onHost, spawnOnHost, type Host } from '@crud-master/test-support/hosts';
import { eventually } from '@crud-master/test-support/http';
import { pm2ProcessesOn } from '@crud-master/test-support/pm2';
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
 * `<mode in octal> <path>` of every PM2 log of a host (the apps', the daemon's, the rotated ones). pm2-logrotate
 * deletes the oldest rotated file as it adds one: a file gone between find's listing and its stat is no error.
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
      const users = onHost(host, 'ps', ['-o', 'user:32=', '-p', pids.join(',')]).trim().split(/\s+/);
      expect(users, `the users of the PM2 daemon and apps on the ${host} host`).to.have.length(pids.length);
      expect(new Set(users), `the users of the PM2 daemon and apps on the ${host} host`).to.deep.equal(new Set([SERVICE_USER]));
    }
  });

  it(`When sudo is asked what ${SERVICE_USER} may run, then nothing, and it has no login shell`, () => {
    for (const { host } of hostsWithApps()) {
      const rights = spawnOnHost(host, 'sudo', ['-n', '-l', '-U', SERVICE_USER]);
      expect(`${rights.stdout}${rights.stderr}`, `sudo -l -U ${SERVICE_USER} on the ${host} host`).to.match(/is not allowed to run sudo/);
      const account = onHost(host, 'getent', ['passwd', SERVICE_USER]).trim().split(':');
      expect(account[6], `the shell of ${SERVICE_USER} on the ${host} host`).to.equal('/usr/sbin/nologin');
      expect(onHost(host, 'id', ['-Gn', SERVICE_USER]).trim(), `the groups of ${SERVICE_USER} on the ${host} host`).to.equal(SERVICE_USER);
    }
  });

  it(`When root runs pm2 startup for another user, then the unit still runs PM2 as ${SERVICE_USER} with its PM2_HOME`, () => {
    for (const { host } of hostsWithApps()) {
      // A host without systemd has no unit yet: the test removes what it writes (systemctl may fail there after
      // pm2 has written the unit; its exit code is not the point).
      const had = sh(host, 'for f in "$@"; do [ -e "$f" ] && echo "$f"; done; true', UNIT, '/etc/systemd/system/pm2-root.service').trim();
      try {
        spawnOnHost(host, 'pm2', ['startup', 'systemd', '-u', 'root', '--hp', '/root']);
        const unit = sh(host, 'cat "$1"', UNIT);
        expect(unit, `${UNIT} on the ${host} host`).to.match(new RegExp(`^User=${SERVICE_USER}$`, 'm'));
        expect(unit, `${UNIT} on the ${host} host`).to.match(new RegExp(`^Environment=PM2_HOME=${PM2_HOME}$`, 'm'));
        const units = sh(host, 'ls -d /etc/systemd/system/pm2-*.service').trim().split('\n');
        expect(units, `the PM2 units on the ${host} host`).to.deep.equal([UNIT]);
      } finally {
        if (!had.includes('pm2-root')) sh(host, 'rm -f /etc/systemd/system/pm2-root.service /etc/systemd/system/multi-user.target.wants/pm2-root.service');
        if (!had.includes(UNIT)) sh(host, 'rm -f "$1" "/etc/systemd/system/multi-user.target.wants/$(basename "$1")"', UNIT);
      }
    }
  });

  it('When the PM2 daemon writes logs, then it runs with umask 0027 and no log is readable by others', () => {
    for (const { host } of hostsWithApps()) {
      const umask = sh(host, 'sed -n "s/^Umask:[[:space:]]*//p" "/proc/$1/status"', daemonPid(host)).trim();
      expect(umask, `the umask of the PM2 daemon on the ${host} host`).to.equal('0027');
      const logs = logModes(host);
      expect(logs.map((log) => log.path), `the PM2 logs on the ${host} host`).to.include(`${PM2_HOME}/pm2.log`);
      const open = logs.filter((log) => (log.mode & 0o007) !== 0).map((log) => `${log.path} (${log.mode.toString(8)})`);
      expect(open, `PM2 logs that others may read on the ${host} host`).to.deep.equal([]);
    }
  });

  describe('log rotation', () => {
    const host: Host = 'gateway';
    const LOG = `${PM2_HOME}/logs/api-gateway-out.log`;
    let saved: Record<string, string> = {};
    const rotated = () => logModes(host).filter((log) => log.path.startsWith(`${PM2_HOME}/logs/api-gateway-out__`));

    before(() => {
      const conf = JSON.parse(sh(host, 'cat "$1"', `${PM2_HOME}/module_conf.json`)) as Record<string, Record<string, string>>;
      saved = conf['pm2-logrotate'] ?? {};
      expect(saved, 'the settings of pm2-logrotate (roles/pm2, pm2_logrotate_settings)').to.include({ max_size: '10M', compress: 'true' });
    });

    after(() => {
      // `pm2 set` restarts the module with the value: back to the role's settings
      for (const key of ['max_size', 'workerInterval'] as const) onHost(host, 'pm2', ['set', `pm2-logrotate:${key}`, saved[key]!]);
    });

    it("When api-gateway's log passes the size cap, then pm2-logrotate rotates it into a compressed file that others cannot read", async function () {
      this.timeout(90_000);
      // pm2-logrotate keeps `retain` files (14), deleting the oldest as it adds one: look for a new name, not a count
      const before = new Set(rotated().map((log) => log.path));
      const fresh = () => rotated().filter((log) => !before.has(log.path));
      onHost(host, 'pm2', ['set', 'pm2-logrotate:max_size', '1K']);
      onHost(host, 'pm2', ['set', 'pm2-logrotate:workerInterval', '2']);
      // each request is a log line of api-gateway
      const grown = await eventually(async () => {
        for (let i = 0; i < 10; i += 1) await fetch(`${gateway}/api/movies?limit=1`).then((r) => r.arrayBuffer());
        return Number(sh(host, 'stat -c %s "$1"', LOG)) > 1024 || fresh().length > 0 ? true : undefined;
      }, 20_000, `${LOG} above 1 KiB`);
      expect(grown).to.equal(true);
      const added = await eventually(() => (fresh().length > 0 ? fresh() : undefined), 60_000, `a rotated ${LOG}`);
      for (const log of added) expect(log.path, 'the rotated file').to.match(/__\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d\.log\.gz$/);
      for (const log of rotated()) expect(log.mode & 0o007, `${log.path} (${log.mode.toString(8)}) is not readable by others`).to.equal(0);
    });
  });
});
