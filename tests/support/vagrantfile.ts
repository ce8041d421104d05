import { spawnSync } from 'node:child_process';
import { cpSync, readFileSync } from 'node:fs';
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
