import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('../..', import.meta.url));

/** A VM as the Vagrantfile derives it from .env (crud_master_vms of .vagrant/inventory.json). */
export interface Vm {
  name: string;
  group: 'gateway' | 'inventory' | 'billing' | 'monitor';
  ip: string;
  secrets: string[];
}

/** Copies what the Vagrantfile reads (itself, .env.example, .gitignore, ansible/) into DIR, a scratch checkout. */
export const copyForVagrantfile = (dir: string) => {
  for (const entry of ['Vagrantfile', '.env.example', '.gitignore', 'ansible'])
    cpSync(path.join(repo, entry), path.join(dir, entry), { recursive: true });
  return dir;
};

/**
 * The Vagrantfile of CHECKOUT, loaded by Ruby with Vagrant stubbed and ARGS as vagrant's command line; then the Ruby
 * code AFTER runs.
 */
export const loadVagrantfile = (checkout: string, args: string[] = [], after = '') => {
  const ruby = `module Vagrant; def self.configure(*) end; end; load "Vagrantfile"; ${after}`;
  const result = spawnSync('ruby', ['-e', ruby, '--', ...args], { cwd: checkout, encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, out: `${result.stdout}${result.stderr}` };
};

/** The VMs that the Vagrantfile of CHECKOUT wrote when Vagrant last loaded it, billing-vm first. */
export const vagrantVms = (checkout: string): Vm[] =>
  JSON.parse(readFileSync(path.join(checkout, '.vagrant/inventory.json'), 'utf8')).all.vars.crud_master_vms;

/**
 * ansible-playbook on the one play PLAY (YAML), written into CHECKOUT's ansible/ so that its group_vars and
 * filter_plugins apply, with ARGS (the inventory, extra variables). Each task's results by host, from the json
 * callback.
 */
export function ansibleProbe(
  checkout: string,
  play: string,
  args: string[],
): Record<string, Record<string, unknown>>[] {
  const probe = path.join(checkout, 'ansible/probe.yml');
  writeFileSync(probe, play);
  const out = execFileSync('ansible-playbook', [...args, probe], {
    encoding: 'utf8',
    // the json callback alone on stdout: ansible.cfg's timer would print after it
    env: {
      ...process.env,
      ANSIBLE_STDOUT_CALLBACK: 'json',
      ANSIBLE_CALLBACKS_ENABLED: '',
      ANSIBLE_LOCALHOST_WARNING: 'false',
    },
  });
  return (JSON.parse(out).plays[0].tasks as { hosts: Record<string, Record<string, unknown>> }[]).map(
    (task) => task.hosts,
  );
}
