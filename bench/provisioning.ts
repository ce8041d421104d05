/** Times `make local-idempotent`, a provisioning run with nothing to change, when it would really change nothing. */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { env, log, root, round } from './config.js';

/** The files that a provisioning run would copy to /opt/crud-master: none, or it is not a "nothing to change" run. */
function deployDrift(): string[] {
  const dest = '/opt/crud-master/';
  if (!existsSync(dest)) return ['/opt/crud-master does not exist'];
  // what the build role leaves out of its copy
  const excludes = (
    parse(readFileSync(`${root}roles/crud_build/defaults/main.yml`, 'utf8')) as { crud_build_sync_excludes: string[] }
  ).crud_build_sync_excludes;
  const out = execFileSync(
    'rsync',
    [
      '-rlpn',
      '--checksum',
      '--delete',
      '-i',
      '--omit-dir-times',
      '--filter=:-_.gitignore',
      ...excludes.map((e) => `--exclude=${e}`),
      root,
      dest,
    ],
    { encoding: 'utf8' },
  );
  return out.split('\n').filter((line) => line.trim() && !/^\.d/.test(line) && !/^cd\+\+/.test(line));
}

export async function provisioningRun(): Promise<{ skipped: string } | { seconds: number; changed_0: boolean }> {
  if (env.BENCH_PROVISION === '0') return { skipped: 'BENCH_PROVISION=0' };
  const drift = deployDrift();
  if (drift.length > 0) {
    log(`memory: not timing the provisioning run, it would deploy: ${drift.join('; ')}`);
    return { skipped: `checkout != deployed copy (${drift.length} files): it would deploy` };
  }
  log('memory: timing `make local-idempotent` (a provisioning run with nothing to change)');
  const started = performance.now();
  const code = await new Promise<number>((resolve) => {
    const child = spawn('make', ['local-idempotent'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const keep = (chunk: Buffer) => {
      tail = (tail + chunk.toString()).slice(-2000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('close', (c) => {
      if (c !== 0) log(`make local-idempotent failed:\n${tail}`);
      resolve(c ?? 1);
    });
  });
  return { seconds: round((performance.now() - started) / 1000, 1), changed_0: code === 0 };
}
